"""admin.app: the admin API's key life-cycle and usage endpoints."""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from authproxy.config.model import admin_trail_file
from authproxy.web.appkeys import CONFIG_KEY
from tests.support.admin import Stack
from tests.support.auth import basic_auth
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
    assert len(commands) == 11
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
    assert statuses[:5] == ["201", "200", "200", "200", "200"]
    assert statuses[5:] == ["201", "200", "201", "200", "200", "200"]


async def _basic(stack: Stack, user: str, password: str) -> int:
    resp = await stack.proxy.get("/api/tags", headers=basic_auth(user, password))
    await resp.read()
    return resp.status


async def test_a_password_changes_with_the_rotation_grace(stack: Stack) -> None:
    """POST .../passwd: the new password works at once, the old one for the grace."""
    old, new = "the first password", "the second password"
    stack.secrets.add(old, new)
    status, created = await stack.api(
        "POST", "/admin/keys", {"name": "human", "password": old}
    )
    assert status == HTTPStatus.CREATED
    status, changed = await stack.api(
        "POST", "/admin/keys/human/passwd", {"password": new, "grace": "1h"}
    )
    assert status == HTTPStatus.OK
    assert (changed["id"], changed["token"], changed["status"]) == (
        created["id"],
        None,
        "active",
    )
    assert changed["previous_valid_until"].endswith("Z")
    assert (await _basic(stack, "human", new), await _basic(stack, "human", old)) == (
        200,
        200,
    )
    stack.clock.advance(hours=1, seconds=1)
    assert (await _basic(stack, "human", new), await _basic(stack, "human", old)) == (
        200,
        401,
    )
    status, _ = await stack.api(
        "POST", "/admin/keys/human/passwd", {"password": old, "grace": 0}
    )
    assert status == HTTPStatus.OK
    assert await _basic(stack, "human", new) == 401
    trail = admin_trail_file(stack.proxy.app[CONFIG_KEY])
    records = [json.loads(line) for line in trail.read_text().splitlines()]
    passwd = [r for r in records if r["action"] == "passwd"]
    assert [(r["key_name"], r["detail"], r["source"]) for r in passwd] == [
        ("human", {"grace_seconds": 3600.0}, "api"),
        ("human", {"grace_seconds": 0.0}, "api"),
    ]
    assert old not in json.dumps(records)
    assert new not in json.dumps(records)


@pytest.mark.parametrize(
    ("ref", "body", "status", "error"),
    [
        (
            "alice",
            {"password": "a long new password"},
            400,
            "only a password key has a password to change",
        ),
        ("human", {"password": "short"}, 400, "password too short"),
        ("human", {}, 400, "password: required, a string"),
        ("human", {"password": "a long new password", "x": 1}, 400, "x: unknown field"),
        ("nobody", {"password": "a long new password"}, 404, "key not found"),
    ],
    ids=["token-key", "short", "missing", "unknown-field", "unknown-key"],
)
async def test_password_changes_it_refuses(
    stack: Stack, ref: str, body: dict[str, Any], status: int, error: str
) -> None:
    """A token key, a short or missing password, or an unknown key: a clear 4xx."""
    stack.secrets.add("the first password", "a long new password")
    await stack.api(
        "POST", "/admin/keys", {"name": "human", "password": "the first password"}
    )
    got = await stack.api("POST", f"/admin/keys/{ref}/passwd", body)
    assert got == (status, {"error": got[1]["error"]})
    assert got[1]["error"].startswith(error)


async def test_durations_in_errors_read_as_durations(stack: Stack) -> None:
    """A ttl past jwt.max_ttl is refused naming the limit as 1d, not 1 day, 0:00:00."""
    status, data = await stack.api("POST", "/admin/keys/alice/tokens", {"ttl": "2d"})
    assert (status, data) == (400, {"error": "ttl: must be more than 0 and at most 1d"})
