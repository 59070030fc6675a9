"""Request bodies over real sockets: 100-continue, stalls, refusals, /readyz probes."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from http import HTTPStatus

from tests.conftest import wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.test_hostile import raw, status_and_body


def head(method: str, target: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: proxy", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def reply_of(port: int, data: bytes) -> bytes:
    """Send ``data``; return the first complete response (the body may be unsent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        header = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = re.search(rb"Content-Length: (\d+)", header)
        assert length is not None, header
        return header + await reader.readexactly(int(length.group(1)))
    finally:
        writer.close()


async def test_continue_is_sent_only_after_authentication(
    proxy, token, fake: FakeOllama
) -> None:
    """An unauthenticated client is never invited to upload its body."""
    request = head(
        "POST",
        "/api/chat",
        "Expect: 100-continue",
        "Content-Length: 40",
        "Connection: close",
    )
    reply = await reply_of(proxy.port, request)
    assert not reply.startswith(b"HTTP/1.1 100")
    assert status_and_body(reply) == (401, {"error": "unauthorized"})
    assert fake.received == []


async def test_continue_is_sent_to_an_authenticated_client(
    proxy, token, fake: FakeOllama
) -> None:
    """With a valid key, 100 Continue comes first, then the real reply."""
    body = b'{"model":"llama3.2","messages":[]}'
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        head(
            "POST",
            "/api/chat",
            f"Authorization: Bearer {token}",
            "Expect: 100-continue",
            f"Content-Length: {len(body)}",
            "Connection: close",
        )
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(body)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert fake.last.body == body


async def test_unknown_expectation_is_417(proxy, token, fake: FakeOllama) -> None:
    """An expectation other than 100-continue is refused, after authentication."""
    reply = await raw(
        proxy.port,
        head(
            "POST",
            "/api/chat",
            f"Authorization: Bearer {token}",
            "Expect: 200-ok",
            "Content-Length: 2",
            "Connection: close",
        )
        + b"{}",
    )
    assert status_and_body(reply) == (417, {"error": "unsupported Expect header"})
    assert fake.received == []


async def test_stalled_model_body_is_cut(
    start_proxy, token, fake: FakeOllama, audit_path
) -> None:
    """A body that stops arriving gets 408 after limits.body_idle_timeout."""
    client = await start_proxy({"limits.body_idle_timeout": 0.3})
    reply = await raw(
        client.port,
        head(
            "POST",
            "/api/chat",
            f"Authorization: Bearer {token}",
            "Content-Length: 100",
        )
        + b'{"model":',
    )
    assert status_and_body(reply) == (408, {"error": "request body timed out"})
    assert fake.received == []
    (record,) = await wait_audit(audit_path, 1)
    assert (record["outcome"], record["reason"]) == ("denied", "body_timeout")


async def test_stalled_streamed_body_is_cut(
    start_proxy, token, fake: FakeOllama, audit_path
) -> None:
    """A large streamed upload that stalls is cut too, with 408, not 502."""
    client = await start_proxy({"limits.body_idle_timeout": 0.3})
    reply = await raw(
        client.port,
        head(
            "POST",
            f"/api/blobs/sha256:{'ab' * 32}",
            f"Authorization: Bearer {token}",
            f"Content-Length: {1024 * 1024}",
        )
        + b"x" * 100_000,
    )
    assert status_and_body(reply) == (408, {"error": "request body timed out"})
    (record,) = await wait_audit(audit_path, 1)
    assert record["reason"] == "body_timeout"


async def test_ambiguous_body_is_refused_and_audited(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """A body Ollama could read another way gets 400, and the record says why."""
    resp = await proxy.post(
        "/api/chat",
        data=b'{"model":"llama3.2","Model":"qwen3:8b"}',
        headers=bearer,
    )
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert (await resp.json())["error"].startswith("request body: two keys differ")
    (record,) = await wait_audit(audit_path, 1)
    assert (record["outcome"], record["reason"], record["model"]) == (
        "denied",
        "body_invalid",
        None,
    )
    assert fake.received == []


async def test_model_names_ollama_refuses_are_400(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """A non-string, invalid or over-long model name is refused before forwarding."""
    for body, message in [
        ({"model": ["llama3.2"]}, "model: expected a string"),
        ({"model": "a/b/c/d"}, "model: invalid model name"),
        ({"name": "x:cloud:local"}, "name: use either :local or :cloud, not both"),
        ({"model": "m" * (20 * 1024 * 1024)}, "model: longer than 1024 characters"),
    ]:
        data = io.BytesIO(json.dumps(body).encode())
        resp = await proxy.post("/api/show", data=data, headers=bearer)
        assert resp.status == HTTPStatus.BAD_REQUEST
        assert await resp.json() == {"error": message}
    records = await wait_audit(audit_path, 4)
    assert [r["reason"] for r in records] == ["model_invalid"] * 4
    assert max(len(json.dumps(r)) for r in records) < 4096
    assert fake.received == []


async def test_audit_records_the_model_ollama_runs(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """The record names the trimmed model Ollama binds, whatever the key case."""
    resp = await proxy.post(
        "/api/generate",
        data=b'{"MODEL":"  llama3.2 ","prompt":"hi","stream":false}',
        headers={**bearer, "Content-Type": "text/plain"},
    )
    assert resp.status == HTTPStatus.OK
    (record,) = await wait_audit(audit_path, 1)
    assert record["model"] == "llama3.2"


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
