"""web.edge: the request id, the audit requirement, errors answered at the edge."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpServer

from authproxy.keys.lifecycle import CreatedKey
from authproxy.metering.chain import (
    verify_files,
)
from authproxy.web.appkeys import AUDIT_KEY, VERIFIER_KEY, WATCHER_KEY
from tests.support.audit import read_audit, wait_audit
from tests.support.auth import bearer_auth
from tests.support.fake_ollama.server import FakeOllama, create_fake
from tests.support.harness import MakeKey, StartProxy
from tests.support.ollama import OllamaIdentity
from tests.support.payloads import CHAT, chat
from tests.support.rawhttp import (
    build_request,
    closed_port,
    header_lines,
    send_raw,
    status_and_json,
)


async def test_events_carry_the_request_id(proxy, log_capture) -> None:
    """Events logged while handling a request are bound to its request id."""
    resp = await proxy.get("/api/tags", headers={"X-Request-ID": "trace-me-1"})
    assert resp.status == 401
    failed = log_capture.events("auth_failed")[-1]
    assert failed["request_id"] == "trace-me-1"
    assert failed["reason"] == "missing"


async def test_log_context_is_each_request_own(
    start_proxy: StartProxy, bearer: dict[str, str], key: CreatedKey, log_capture: Any
) -> None:
    """Events carry their request's id, peer and key id; the next starts clean."""
    client = await start_proxy(
        {
            "upstream.url": f"http://127.0.0.1:{closed_port()}",
            "server.root_path": "/ollama",
        }
    )
    first = await client.get(
        "/ollama/api/tags", headers={**bearer, "X-Request-ID": "first-1"}
    )
    assert first.status == HTTPStatus.BAD_GATEWAY
    failed = log_capture.events("upstream_failed")[-1]
    assert (failed["request_id"], failed["peer"]) == ("first-1", "127.0.0.1")
    assert failed["key_id"] == key.record.id
    # The same keep-alive connection: nothing of the first request is left.
    second = await client.get("/api/tags", headers={"X-Request-ID": "second-2"})
    assert second.status == HTTPStatus.NOT_FOUND
    refused = log_capture.events("request_refused")[-1]
    assert (refused["request_id"], refused["peer"]) == ("second-2", "127.0.0.1")
    assert "key_id" not in refused


async def test_proxy_keeps_serving_when_audit_fails(
    start_proxy, key, tmp_path: Path, fake: FakeOllama
) -> None:
    """With audit.required false, a broken audit file does not stop traffic."""
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    client = await start_proxy({"audit.file": str(blocker / "usage.jsonl")})
    (blocker / "usage.jsonl").unlink()
    blocker.rmdir()
    blocker.write_text("now a file")
    client.app[AUDIT_KEY].reopen()
    resp = await client.get(
        "/api/tags", headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.OK
    assert client.app[AUDIT_KEY].errors >= 1


async def test_required_audit_refuses_requests_until_it_works(
    start_proxy, key, tmp_path: Path, fake: FakeOllama
) -> None:
    """With audit.required true, an unwritable log means 503 until writing works."""
    target = tmp_path / "req" / "usage.jsonl"
    client = await start_proxy({"audit.file": str(target), "audit.required": True})
    writer = client.app[AUDIT_KEY]
    auth = {"Authorization": f"Bearer {key.token}"}
    assert (await client.get("/api/tags", headers=auth)).status == HTTPStatus.OK
    target.unlink()
    target.parent.rmdir()
    target.parent.write_text("blocked")
    writer.reopen()
    fake.received.clear()
    await client.get("/api/tags", headers=auth)
    resp = await client.get("/api/tags", headers=auth)
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert await resp.json() == {"error": "audit log unavailable"}
    assert fake.received == []
    target.parent.unlink()
    resp = await client.get("/api/tags", headers=auth)  # its 503 record heals the log
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert (await client.get("/api/tags", headers=auth)).status == HTTPStatus.OK
    records = read_audit(target)
    # Records that could not be written were kept and written in order once
    # the log worked again; seq 1 went with the removed file.
    assert [(r["seq"], r["status"], r["reason"]) for r in records] == [
        (2, 503, "audit_unavailable"),
        (3, 503, "audit_unavailable"),
        (4, 503, "audit_unavailable"),
        (5, 200, None),
    ]
    assert verify_files([target]).ok


# --- server.root_path, alone and with an upstream base path ------------------------

GATEWAY_BASE = "/olla/ollama"


Mounted = tuple[TestClient[Any, Any], str, str]


async def _mount(
    aiohttp_server: AiohttpServer,
    fake: FakeOllama,
    start_proxy: StartProxy,
    placing: str,
) -> Mounted:
    """Start the fake Ollama (maybe below a base path), the proxy (maybe below /ollama).

    Returns the client, the prefix it sends before each Ollama path, and the
    prefix the fake sees.
    """
    root = "" if placing == "base-path" else "/ollama"
    base = "" if placing == "root-path" else GATEWAY_BASE
    gateway = await aiohttp_server(
        create_fake(fake, base_path=base), auto_decompress=False, access_log=None
    )
    url = str(gateway.make_url(base)).rstrip("/")
    client = await start_proxy({"upstream.url": url, "server.root_path": root})
    return client, root, base


@pytest.fixture(params=["root-path", "root-path-and-base-path"])
async def mounted(
    request: pytest.FixtureRequest,
    aiohttp_server: AiohttpServer,
    fake: FakeOllama,
    start_proxy: StartProxy,
) -> Mounted:
    """The proxy below /ollama, Ollama at its root or below a base path."""
    return await _mount(aiohttp_server, fake, start_proxy, request.param)


@pytest.fixture(params=["root-path", "base-path", "root-path-and-base-path"])
async def placed(
    request: pytest.FixtureRequest,
    aiohttp_server: AiohttpServer,
    fake: FakeOllama,
    start_proxy: StartProxy,
) -> Mounted:
    """The proxy below /ollama, Ollama below a base path, or both."""
    return await _mount(aiohttp_server, fake, start_proxy, request.param)


async def test_root_path_is_stripped_before_routing(
    mounted: Mounted,
    bearer,
    fake: FakeOllama,
    audit_path: Path,
) -> None:
    """/ollama/v1/models/… is Ollama's /v1/models/…: upstream, in the audit record."""
    client, _, base = mounted
    raw = "/ollama/v1/models/a%2Fb?x=%2F&y=a%20b"  # sent as is, re-encoded by no one
    reply = await send_raw(
        client.port, build_request(*header_lines(bearer), target=raw)
    )
    assert reply.startswith(b"HTTP/1.1 404 ")  # the fake knows no model a/b
    assert fake.last.path_qs == f"{base}/v1/models/a%2Fb?x=%2F&y=a%20b"
    resp = await client.get("/ollama", headers=bearer)
    assert resp.status == HTTPStatus.OK
    assert fake.last.path_qs == f"{base}/"
    records = await wait_audit(audit_path, 2)
    assert [r["path"] for r in records] == ["/v1/models/a%2Fb", "/"]


@pytest.mark.parametrize(
    "target",
    ["/api/tags", "/", "/ollamax/api/tags", "/ollama%2Fapi/tags", "/Ollama/api/tags"],
)
async def test_outside_the_root_path_is_404(
    mounted: Mounted,
    fake: FakeOllama,
    audit_path: Path,
    target: str,
) -> None:
    """Outside server.root_path: 404 JSON before authentication, nothing upstream."""
    client, _, _ = mounted
    reply = await send_raw(client.port, build_request(target=target))
    assert status_and_json(reply) == (404, {"error": "not found"})
    assert fake.received == []
    [record] = await wait_audit(audit_path, 1)
    assert (record["status"], record["reason"]) == (404, "outside_root_path")
    assert client.app[VERIFIER_KEY].stats.argon2_verifications == 0


async def test_probes_answer_outside_the_root_path(
    mounted: Mounted,
) -> None:
    """/healthz and /readyz stay where the orchestrator calls the pod directly."""
    client, _, _ = mounted
    assert (await client.get("/healthz")).status == HTTPStatus.OK
    assert (await client.get("/readyz")).status == HTTPStatus.OK


async def test_dot_segments_cannot_leave_the_root_path(
    mounted: Mounted, bearer, fake: FakeOllama
) -> None:
    """/ollama/../x and its encodings are refused, never resolved by anyone."""
    client, _, _ = mounted
    for target in ["/ollama/../api/pull", "/ollama/%2e%2e/api/pull", "/ollama//x"]:
        reply = await send_raw(
            client.port, build_request(*header_lines(bearer), target=target)
        )
        assert status_and_json(reply) == (400, {"error": "invalid request target"})
    assert fake.received == []


async def test_scopes_models_and_metering_hold_below_either_path(
    placed: Mounted,
    make_key: MakeKey,
    fake: FakeOllama,
    audit_path: Path,
) -> None:
    """Scopes and models are judged on the Ollama path, and usage is metered by it."""
    client, root, base = placed
    team = make_key("team", models=["llama3.2"])  # default scopes: no models:manage
    await client.app[WATCHER_KEY].reload(force=True)
    auth = bearer_auth(team.token)
    pull = await client.post(f"{root}/api/pull", json={"model": "x"}, headers=auth)
    assert pull.status == HTTPStatus.FORBIDDEN
    other = await client.post(
        f"{root}/api/chat", json=chat(model="qwen3:8b"), headers=auth
    )
    assert other.status == HTTPStatus.FORBIDDEN
    assert fake.received == []
    chat_reply = await client.post(
        f"{root}/v1/chat/completions", json=CHAT, headers=auth
    )
    assert chat_reply.status == HTTPStatus.OK
    assert fake.last.path_qs == f"{base}/v1/chat/completions"
    records = await wait_audit(audit_path, 3)
    assert [
        (r["path"], r["model"], r["status"], r["reason"], r["completion_tokens"])
        for r in records
    ] == [
        ("/api/pull", None, 403, "missing_scope:models:manage", 0),
        ("/api/chat", "qwen3:8b", 403, "model_not_allowed", 0),
        ("/v1/chat/completions", "llama3.2", 200, None, 4),
    ]


async def test_a_signature_covers_the_path_below_the_root_path(
    mounted: Mounted, make_key: MakeKey
) -> None:
    """The ollama CLI signs its API path (OLLAMA_HOST=…/ollama): it verifies."""
    client, _, _ = mounted
    identity = OllamaIdentity()
    make_key("laptop", ollama_public_key=identity.pub_line, scopes=["models:read"])
    await client.app[WATCHER_KEY].reload(force=True)
    target, headers = identity.sign("GET", "/api/tags")
    resp = await client.get("/ollama" + target, headers=headers)
    assert resp.status == HTTPStatus.OK


async def test_public_metrics_move_below_the_root_path(
    start_proxy, make_key: MakeKey
) -> None:
    """With metrics.public, /metrics moves to /ollama/metrics (and /metrics is 404)."""
    ops = make_key("ops", scopes=["admin"])
    client = await start_proxy({"metrics.public": True, "server.root_path": "/ollama"})
    auth = bearer_auth(ops.token)
    resp = await client.get("/ollama/metrics", headers=auth)
    assert resp.status == HTTPStatus.OK
    assert "authproxy_" in await resp.text()
    assert (await client.get("/metrics", headers=auth)).status == HTTPStatus.NOT_FOUND
