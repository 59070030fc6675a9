"""web.edge: the request id, the audit requirement, errors answered at the edge."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

from authproxy.metering.chain import (
    verify_files,
)
from authproxy.web.appkeys import AUDIT_KEY
from tests.support.audit import read_audit
from tests.support.fake_ollama.server import FakeOllama


async def test_events_carry_the_request_id(proxy, log_capture) -> None:
    """Events logged while handling a request are bound to its request id."""
    resp = await proxy.get("/api/tags", headers={"X-Request-ID": "trace-me-1"})
    assert resp.status == 401
    failed = log_capture.events("auth_failed")[-1]
    assert failed["request_id"] == "trace-me-1"
    assert failed["reason"] == "missing"


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
