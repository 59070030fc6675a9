"""web.health: /healthz and /readyz without credentials, the cached probe."""

from __future__ import annotations

import asyncio
import time
from http import HTTPStatus
from pathlib import Path

from tests.support.audit import read_audit, wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.rawhttp import closed_port


async def test_health_endpoints_need_no_credentials(proxy, fake: FakeOllama) -> None:
    """/healthz and /readyz answer without credentials; /readyz asks the upstream."""
    resp = await proxy.get("/healthz")
    assert resp.status == HTTPStatus.OK
    assert await resp.json() == {"status": "ok"}
    resp = await proxy.get("/readyz")
    assert resp.status == HTTPStatus.OK
    assert await resp.json() == {"status": "ready"}
    assert [r.path_qs for r in fake.received] == ["/"]


async def test_readyz_reports_a_dead_upstream(start_proxy, key) -> None:
    """/readyz is 503 while the upstream does not answer."""
    client = await start_proxy({"upstream.url": f"http://127.0.0.1:{closed_port()}"})
    resp = await client.get("/readyz")
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert await resp.json() == {"status": "unready", "error": "upstream not answering"}
    assert (await client.get("/healthz")).status == HTTPStatus.OK


async def test_other_methods_on_health_paths_are_proxied_with_auth(
    proxy, fake: FakeOllama
) -> None:
    """Only GET/HEAD /healthz are public; POST /healthz needs a key like any route."""
    resp = await proxy.post("/healthz")
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert fake.received == []


async def test_readyz_asks_the_upstream_once_a_second(proxy, fake: FakeOllama) -> None:
    """However often /readyz is polled, Ollama gets about one probe per second."""
    started = time.monotonic()
    replies = await asyncio.gather(*(proxy.get("/readyz") for _ in range(20)))
    for _ in range(20):
        replies.append(await proxy.get("/readyz"))
    elapsed = time.monotonic() - started
    assert {r.status for r in replies} == {200}
    probes = [r for r in fake.received if r.path_qs == "/"]
    assert 1 <= len(probes) <= int(elapsed) + 1


async def test_health_probes_are_not_audited(proxy, audit_path: Path) -> None:
    """Liveness and readiness probes do not fill the audit log."""
    await proxy.get("/healthz")
    await proxy.get("/readyz")
    # A request that is audited, after the probes: once its record is written,
    # any record of theirs would be too.
    await proxy.get("/api/tags")
    await wait_audit(audit_path, 1)
    assert [r["path"] for r in read_audit(audit_path)] == ["/api/tags"]
