"""admin.app: the admin API's key life-cycle and usage endpoints."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from pathlib import Path

from tests.support.admin import Stack
from tests.support.fake_ollama.server import FakeOllama
from tests.support.payloads import CHAT, EMBED


async def test_create_show_list_update(stack: Stack, fake: FakeOllama) -> None:
    """A key created over the API works at once; listings never show secrets."""
    status, created = await stack.api(
        "POST",
        "/admin/keys",
        {
            "name": "team-a",
            "scopes": ["embeddings"],
            "models": ["nomic-embed-text"],
            "note": "embeddings only",
            "expires_at": "30d",
        },
    )
    assert status == HTTPStatus.CREATED
    assert created["scopes"] == ["embeddings"]
    assert created["status"] == "active"
    assert "hash" not in created
    assert "fingerprint" not in created
    assert await stack.call(created["token"], "POST", "/api/embed", EMBED) == 200
    status, shown = await stack.api("GET", "/admin/keys/team-a")
    assert (status, shown["id"]) == (200, created["id"])
    status, listing = await stack.api("GET", "/admin/keys")
    assert status == 200
    assert [k["name"] for k in listing["keys"]] == ["alice", "ops", "team-a"]
    assert "argon2" not in json.dumps(listing)
    status, changed = await stack.api(
        "PATCH",
        f"/admin/keys/{created['id']}",
        {"scopes": ["models:read"], "note": None},
    )
    assert (status, changed["scopes"], changed["note"]) == (200, ["models:read"], None)
    assert await stack.call(created["token"], "POST", "/api/embed", EMBED) == 403
    assert await stack.call(created["token"]) == 200


async def test_usage_endpoint(stack: Stack, key) -> None:
    """GET /admin/usage serves the audit numbers grouped like `authproxy usage`."""
    for _ in range(2):
        await stack.call(str(key.token), "POST", "/api/chat", CHAT)
    status, data = await stack.api("GET", "/admin/usage?by=key&by=model")
    assert status == 200
    assert data["by"] == ["key", "model"]
    rows = {(r["key"], r["model"]): r for r in data["rows"]}
    assert rows[("alice", "llama3.2:latest")]["requests"] == 2
    assert rows[("alice", "llama3.2:latest")]["total_tokens"] == 60


def _documented_admin_example() -> list[str]:
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "keys-and-policy.md").read_text("utf-8")
    section = text[text.index("\n## Admin API\n") : text.index("\n## JWTs\n")]
    return section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()


async def test_documented_admin_examples_work(stack: Stack) -> None:
    """Each curl command of the documented admin example succeeds against the API."""
    mint, setup, *lines = _documented_admin_example()
    # The example mints its admin JWT first; the stack's token stands in for it.
    assert mint.startswith("export ADMIN_TOKEN=$(authproxy admin-token) ")
    commands = [line for line in lines if line.startswith("curl ")]
    assert len(commands) == 9
    admin_url = str(stack.admin.make_url("")).rstrip("/")
    statuses = []
    for command in commands:
        script = (
            f"{setup}\nADMIN={admin_url}\n{command} -o /dev/null -w '%{{http_code}}'"
        )
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            script,
            env={"PATH": "/usr/bin:/bin", "ADMIN_TOKEN": stack.admin_token},
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        statuses.append(out.decode())
    assert statuses == ["201", "200", "200", "200", "200", "201", "200", "200", "200"]
