"""proxy.relay: replies relayed byte for byte, as they come, and cut visibly."""

from __future__ import annotations

import itertools
import time
from http import HTTPStatus
from typing import Any

import aiohttp
import pytest

from authproxy.web.appkeys import UPSTREAM_KEY
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import HOP_BY_HOP
from tests.support.payloads import GENERATE, SAY_HI, blob_path
from tests.support.polling import poll_until, upstream_saw_disconnect

FORMATS: list[tuple[str, str, str, Any, int, str]] = [
    (
        "generate-stream",
        "POST",
        "/api/generate",
        {"model": "llama3.2", "prompt": "hi"},
        200,
        "application/x-ndjson",
    ),
    (
        "generate-json",
        "POST",
        "/api/generate",
        {"model": "llama3.2", "prompt": "hi", "stream": False},
        200,
        "application/json; charset=utf-8",
    ),
    ("chat-stream", "POST", "/api/chat", SAY_HI, 200, "application/x-ndjson"),
    (
        "chat-json",
        "POST",
        "/api/chat",
        {**SAY_HI, "stream": False},
        200,
        "application/json; charset=utf-8",
    ),
    (
        "chat-load",
        "POST",
        "/api/chat",
        {"model": "llama3.2", "messages": []},
        200,
        "application/json; charset=utf-8",
    ),
    (
        "chat-model-missing",
        "POST",
        "/api/chat",
        {**SAY_HI, "model": "missing"},
        404,
        "application/json; charset=utf-8",
    ),
    (
        "embed",
        "POST",
        "/api/embed",
        {"model": "nomic-embed-text", "input": ["a", "b"]},
        200,
        "application/json; charset=utf-8",
    ),
    (
        "embeddings-legacy",
        "POST",
        "/api/embeddings",
        {"model": "nomic-embed-text", "prompt": "a"},
        200,
        "application/json; charset=utf-8",
    ),
    (
        "pull-stream",
        "POST",
        "/api/pull",
        {"model": "llama3.2"},
        200,
        "application/x-ndjson",
    ),
    (
        "pull-json",
        "POST",
        "/api/pull",
        {"model": "llama3.2", "stream": False},
        200,
        "application/json",
    ),
    ("copy-empty", "POST", "/api/copy", {"source": "a", "destination": "b"}, 200, ""),
    ("delete-empty", "DELETE", "/api/delete", {"model": "a"}, 200, ""),
    (
        "blob-create",
        "POST",
        blob_path("ab"),
        b"\x00\x01binary",
        201,
        "",
    ),
    ("root", "GET", "/", None, 200, "text/plain; charset=utf-8"),
    ("version", "GET", "/api/version", None, 200, "application/json; charset=utf-8"),
    ("tags", "GET", "/api/tags", None, 200, "application/json; charset=utf-8"),
    ("ps", "GET", "/api/ps", None, 200, "application/json; charset=utf-8"),
    (
        "show",
        "POST",
        "/api/show",
        {"model": "llama3.2"},
        200,
        "application/json; charset=utf-8",
    ),
    ("unknown-route", "GET", "/api/nope", None, 404, "text/plain"),
    (
        "v1-chat-stream",
        "POST",
        "/v1/chat/completions",
        {**SAY_HI, "stream": True},
        200,
        "text/event-stream",
    ),
    (
        "v1-chat-stream-usage",
        "POST",
        "/v1/chat/completions",
        {**SAY_HI, "stream": True, "stream_options": {"include_usage": True}},
        200,
        "text/event-stream",
    ),
    ("v1-chat-json", "POST", "/v1/chat/completions", SAY_HI, 200, "application/json"),
    (
        "v1-completions-stream",
        "POST",
        "/v1/completions",
        {
            "model": "llama3.2",
            "prompt": "hi",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        200,
        "text/event-stream",
    ),
    (
        "v1-embeddings",
        "POST",
        "/v1/embeddings",
        {"model": "nomic-embed-text", "input": "a"},
        200,
        "application/json",
    ),
    ("v1-models", "GET", "/v1/models", None, 200, "application/json"),
    ("v1-model", "GET", "/v1/models/llama3.2:latest", None, 200, "application/json"),
    (
        "v1-responses-stream",
        "POST",
        "/v1/responses",
        {"model": "llama3.2", "input": "hi", "stream": True},
        200,
        "text/event-stream",
    ),
    (
        "v1-responses-json",
        "POST",
        "/v1/responses",
        {"model": "llama3.2", "input": "hi"},
        200,
        "application/json",
    ),
    (
        "v1-messages-stream",
        "POST",
        "/v1/messages",
        {**SAY_HI, "max_tokens": 64, "stream": True},
        200,
        "text/event-stream",
    ),
    (
        "v1-messages-json",
        "POST",
        "/v1/messages",
        {**SAY_HI, "max_tokens": 64},
        200,
        "application/json",
    ),
    ("v1-messages-invalid", "POST", "/v1/messages", SAY_HI, 400, "application/json"),
]


def _kwargs(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, bytes):
        return {"data": body}
    return {"json": body}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "content_type"),
    [f[1:] for f in FORMATS],
    ids=[f[0] for f in FORMATS],
)
async def test_body_is_relayed_byte_for_byte(
    proxy, bearer, fake: FakeOllama, method, path, body, status, content_type
) -> None:
    """Every format arrives exactly as the upstream sent it: status, type, bytes."""
    fake.behaviour.context = list(range(128000, 133000))  # a very long final line
    async with proxy.request(method, path, headers=bearer, **_kwargs(body)) as resp:
        received = await resp.read()
        headers = resp.headers
    assert resp.status == status
    assert headers.get("Content-Type", "") == content_type
    assert received == b"".join(fake.sent)
    assert len(received) > 0 or status in {200, 201}
    assert not HOP_BY_HOP & {h.lower() for h in headers}
    assert "Server" not in headers


async def test_head_keeps_content_length_and_sends_no_body(proxy, bearer) -> None:
    """HEAD / relays Ollama's Content-Length: 17 with an empty body."""
    async with proxy.head("/", headers=bearer) as resp:
        assert resp.status == HTTPStatus.OK
        assert resp.headers["Content-Length"] == "17"
        assert await resp.read() == b""


async def test_content_length_is_preserved(proxy, bearer, fake: FakeOllama) -> None:
    """A non-streamed reply keeps its Content-Length instead of turning chunked."""
    async with proxy.get("/api/version", headers=bearer) as resp:
        body = await resp.read()
        assert resp.headers["Content-Length"] == str(len(body))
        assert "Transfer-Encoding" not in resp.headers


async def test_chunks_arrive_as_they_are_sent(proxy, bearer, fake: FakeOllama) -> None:
    """Chunks written 50 ms apart upstream arrive separately, not in one lump."""
    fake.behaviour.tokens = [f"t{i}" for i in range(6)]
    fake.behaviour.chunk_delay = 0.05
    arrivals: list[tuple[float, bytes]] = []
    async with proxy.post("/api/chat", json=SAY_HI, headers=bearer) as resp:
        async for chunk in resp.content.iter_any():
            arrivals.append((time.monotonic(), chunk))
    assert b"".join(c for _, c in arrivals) == b"".join(fake.sent)
    assert len(arrivals) >= 6
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert sum(1 for g in gaps if g >= 0.03) >= 5


async def test_client_disconnect_closes_upstream(
    proxy, bearer, fake: FakeOllama, log_capture
) -> None:
    """When the client leaves mid-stream the upstream request is closed within 1 s."""
    fake.behaviour.tokens = [f"t{i}" for i in range(100)]
    fake.behaviour.chunk_delay = 0.1
    resp = await proxy.post("/api/generate", json=GENERATE, headers=bearer)
    await resp.content.readline()
    resp.close()
    left = time.monotonic()
    await upstream_saw_disconnect(fake, left)
    assert fake.completed == 0
    await poll_until(lambda: log_capture.events("client_disconnected"))
    assert len(log_capture.events("client_disconnected")) == 1
    assert not [line for line in log_capture.lines() if "exception" in line]
    assert not [line for line in log_capture.lines() if line["level"] == "error"]


async def test_idle_stream_is_cut(
    start_proxy, key, fake: FakeOllama, log_capture
) -> None:
    """A stream silent past upstream.idle_timeout is cut, visibly truncated."""
    fake.behaviour.chunk_delay = 2
    client = await start_proxy({"upstream.idle_timeout": 0.3})
    resp = await client.post(
        "/api/chat", json=SAY_HI, headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.OK
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    [event] = log_capture.events("upstream_failed")
    assert (event["reason"], event["phase"]) == ("read timeout", "body")


async def test_upstream_dying_mid_stream_truncates(
    proxy, bearer, fake: FakeOllama, log_capture
) -> None:
    """If the upstream dies mid-stream, the client's stream ends unterminated.

    The log says which upstream and why, in words (no exception class).
    """
    fake.behaviour.abort_after = 2
    resp = await proxy.post("/api/chat", json=SAY_HI, headers=bearer)
    assert resp.status == HTTPStatus.OK
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    [event] = log_capture.events("upstream_failed")
    origin = proxy.app[UPSTREAM_KEY].origin
    assert event["upstream"] == f"{origin}/api/chat"
    assert (event["reason"], event["phase"]) == ("upstream closed connection", "body")


async def test_error_line_passes_through(proxy, bearer, fake: FakeOllama) -> None:
    """A mid-stream {"error":...} line reaches the client unchanged."""
    fake.behaviour.error_after = 2
    resp = await proxy.post("/api/chat", json=SAY_HI, headers=bearer)
    body = await resp.read()
    assert body == b"".join(fake.sent)
    assert body.endswith(
        b'{"error":"an error was encountered while running the model"}\n'
    )
