"""Forwarding: bodies byte for byte, streaming, disconnects, failures, headers."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
from http import HTTPStatus
from typing import Any

import aiohttp
import pytest
import zstandard

from authproxy.web.appkeys import UPSTREAM_KEY
from tests.conftest import closed_port, upstream_saw_disconnect, wait_audit
from tests.support.fake_ollama.server import FakeOllama

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "Say hi"}]}

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
    ("chat-stream", "POST", "/api/chat", CHAT, 200, "application/x-ndjson"),
    (
        "chat-json",
        "POST",
        "/api/chat",
        {**CHAT, "stream": False},
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
        {**CHAT, "model": "missing"},
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
        "/api/blobs/sha256:" + "ab" * 32,
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
        {**CHAT, "stream": True},
        200,
        "text/event-stream",
    ),
    (
        "v1-chat-stream-usage",
        "POST",
        "/v1/chat/completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        200,
        "text/event-stream",
    ),
    ("v1-chat-json", "POST", "/v1/chat/completions", CHAT, 200, "application/json"),
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
        {**CHAT, "max_tokens": 64, "stream": True},
        200,
        "text/event-stream",
    ),
    (
        "v1-messages-json",
        "POST",
        "/v1/messages",
        {**CHAT, "max_tokens": 64},
        200,
        "application/json",
    ),
    ("v1-messages-invalid", "POST", "/v1/messages", CHAT, 400, "application/json"),
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


async def test_proxied_headers_match_direct(proxy, bearer, upstream) -> None:
    """End-to-end headers are the upstream's (minus hop-by-hop) plus X-Request-ID."""
    async with (
        aiohttp.ClientSession() as direct,
        direct.post(
            upstream.make_url("/v1/messages"),
            json={**CHAT, "max_tokens": 8, "stream": True},
        ) as resp,
    ):
        await resp.read()
        direct_headers = {k.lower() for k in resp.headers}
    async with proxy.post(
        "/v1/messages", json={**CHAT, "max_tokens": 8, "stream": True}, headers=bearer
    ) as resp:
        await resp.read()
        proxied_headers = {k.lower() for k in resp.headers}
    assert "connection" in direct_headers  # hop-by-hop: not relayed
    assert proxied_headers - {"x-request-id"} == direct_headers - HOP_BY_HOP
    assert "cache-control" in proxied_headers


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
    async with proxy.post("/api/chat", json=CHAT, headers=bearer) as resp:
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
    resp = await proxy.post(
        "/api/generate", json={"model": "llama3.2", "prompt": "x"}, headers=bearer
    )
    await resp.content.readline()
    resp.close()
    left = time.monotonic()
    await upstream_saw_disconnect(fake, left)
    assert fake.completed == 0
    await asyncio.sleep(0.1)
    assert len(log_capture.events("client_disconnected")) == 1
    assert not [line for line in log_capture.lines() if "exception" in line]
    assert not [line for line in log_capture.lines() if line["level"] == "error"]


async def test_client_disconnect_before_headers(
    proxy, bearer, fake: FakeOllama
) -> None:
    """A client that gives up while the model loads cancels the upstream request too."""
    fake.behaviour.header_delay = 30
    with pytest.raises(TimeoutError):
        await proxy.post(
            "/api/chat",
            json=CHAT,
            headers=bearer,
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    left = time.monotonic()
    await upstream_saw_disconnect(fake, left)
    assert fake.completed == 0


async def test_upstream_down_is_502(start_proxy, bearer) -> None:
    """An unreachable upstream gets 502 with a JSON error."""
    client = await start_proxy({"upstream.url": f"http://127.0.0.1:{closed_port()}"})
    resp = await client.get("/api/tags", headers=bearer)
    assert resp.status == HTTPStatus.BAD_GATEWAY
    assert await resp.json() == {"error": "upstream unavailable"}
    assert len(resp.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    "overrides_extra", [{"upstream.response_timeout": 0.3}], ids=["0.3s"]
)
async def test_slow_headers_are_504(
    start_proxy, key, fake: FakeOllama, overrides_extra
) -> None:
    """No response headers within upstream.response_timeout gets 504."""
    fake.behaviour.header_delay = 3
    client = await start_proxy(overrides_extra)
    resp = await client.post(
        "/api/chat", json=CHAT, headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.GATEWAY_TIMEOUT
    assert await resp.json() == {"error": "upstream timed out"}


async def test_idle_stream_is_cut(start_proxy, key, fake: FakeOllama) -> None:
    """A stream silent past upstream.idle_timeout is cut, visibly truncated."""
    fake.behaviour.chunk_delay = 2
    client = await start_proxy({"upstream.idle_timeout": 0.3})
    resp = await client.post(
        "/api/chat", json=CHAT, headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.OK
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_upstream_dying_mid_stream_truncates(
    proxy, bearer, fake: FakeOllama
) -> None:
    """If the upstream dies mid-stream, the client's stream ends unterminated."""
    fake.behaviour.abort_after = 2
    resp = await proxy.post("/api/chat", json=CHAT, headers=bearer)
    assert resp.status == HTTPStatus.OK
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()


async def test_error_line_passes_through(proxy, bearer, fake: FakeOllama) -> None:
    """A mid-stream {"error":...} line reaches the client unchanged."""
    fake.behaviour.error_after = 2
    resp = await proxy.post("/api/chat", json=CHAT, headers=bearer)
    body = await resp.read()
    assert body == b"".join(fake.sent)
    assert body.endswith(
        b'{"error":"an error was encountered while running the model"}\n'
    )


async def test_upstream_receives_clean_headers(proxy, token, fake: FakeOllama) -> None:
    """Credentials and hop-by-hop headers dropped; Host, X-Forwarded-* rebuilt."""
    headers = {
        "Authorization": f"Bearer {token}",
        "X-Api-Key": "something",
        "Cookie": "session=1",
        "Connection": "keep-alive, X-Private",
        "X-Private": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "6.6.6.6",
        "Forwarded": "for=6.6.6.6",
        "User-Agent": "ThingsBoard/4.0",
        "Accept-Encoding": "gzip",
        "X-Custom": "kept",
    }
    resp = await proxy.get("/api/tags", headers=headers)
    assert resp.status == HTTPStatus.OK
    seen = fake.last.headers
    for name in (
        "Authorization",
        "X-Api-Key",
        "Cookie",
        "X-Private",
        "Keep-Alive",
        "TE",
        "X-Real-IP",
        "Forwarded",
        "Accept-Encoding",
    ):
        assert name not in seen, name
    assert seen["Host"] == f"127.0.0.1:{fake_port(proxy)}"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == f"127.0.0.1:{proxy.port}"
    assert seen["User-Agent"] == "ThingsBoard/4.0"
    assert seen["X-Custom"] == "kept"
    assert token not in str(seen)


def fake_port(proxy) -> int:
    port: int | None = proxy.app[UPSTREAM_KEY].origin.port
    assert port is not None
    return port


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123_X.y:z", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("bad id", False),
        ("<script>", False),
    ],
    ids=["sane", "max-length", "too-long", "space", "markup"],
)
async def test_request_id_kept_or_generated(
    proxy, bearer, fake: FakeOllama, sent, kept
) -> None:
    """A sane X-Request-ID is kept and echoed; anything else is replaced."""
    resp = await proxy.get("/api/tags", headers={**bearer, "X-Request-ID": sent})
    echoed = resp.headers["X-Request-ID"]
    assert fake.last.headers["X-Request-ID"] == echoed
    assert (echoed == sent) is kept
    assert len(echoed) == len(sent) if kept else len(echoed) == 32


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/tags?x=%2F&y=a%20b",
        "/v1/models/a%2Fb",
        "/api/tags?next=/../x",
    ],
    ids=["query", "encoded-slash", "dots-in-query"],
)
async def test_path_forwarded_as_received(
    proxy, bearer, fake: FakeOllama, raw_path
) -> None:
    """The raw path and query reach the configured upstream unchanged."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: {bearer['Authorization']}\r\n\r\n".encode()
    )
    await writer.drain()
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 ")
    assert fake.last.path_qs == raw_path
    assert fake.last.headers["Host"] == f"127.0.0.1:{fake_port(proxy)}"


async def test_absolute_form_target_is_rejected(
    proxy, bearer, fake: FakeOllama
) -> None:
    """An absolute-form request target never chooses the upstream host."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        b"GET http://evil.example/api/tags HTTP/1.1\r\nHost: evil.example\r\n"
        + f"Authorization: {bearer['Authorization']}\r\n".encode()
        + b"Connection: close\r\n\r\n"
    )
    await writer.drain()
    reply = await reader.read()
    writer.close()
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'{"error":"invalid request target"}' in reply
    assert fake.received == []


async def test_body_over_limit_is_413(start_proxy, key, fake: FakeOllama) -> None:
    """A body over server.max_body_size gets 413 and nothing reaches the upstream."""
    client = await start_proxy({"server.max_body_size": "1KiB"})
    auth = {"Authorization": f"Bearer {key.token}"}
    resp = await client.post(
        "/api/blobs/sha256:" + "00" * 32, data=b"x" * 2048, headers=auth
    )
    assert resp.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert await resp.json() == {"error": "request body too large"}
    assert fake.received == []

    async def chunks():
        for _ in range(4):
            yield b"y" * 512

    resp = await client.post(
        "/api/blobs/sha256:" + "11" * 32, data=chunks(), headers=auth
    )
    assert resp.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    resp = await client.post(
        "/api/blobs/sha256:" + "22" * 32, data=b"z" * 1024, headers=auth
    )
    assert resp.status == HTTPStatus.CREATED


async def test_large_body_streams_intact(proxy, bearer, fake: FakeOllama) -> None:
    """A multi-megabyte upload, chunked or not, reaches the upstream byte for byte."""
    payload = bytes(range(256)) * 20000

    async def chunks():
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    resp = await proxy.post(
        "/api/blobs/sha256:" + "ab" * 32, data=io.BytesIO(payload), headers=bearer
    )
    assert resp.status == HTTPStatus.CREATED
    assert fake.last.body == payload
    assert fake.last.headers["Content-Length"] == str(len(payload))
    resp = await proxy.post(
        "/api/blobs/sha256:" + "cd" * 32, data=chunks(), headers=bearer
    )
    assert resp.status == HTTPStatus.CREATED
    assert fake.last.body == payload


@pytest.mark.parametrize(
    ("path", "coding"),
    [
        ("/v1/chat/completions", "gzip"),
        ("/v1/chat/completions", "ZSTD"),
        ("/v1/chat/completions", "zstd, gzip"),
        ("/api/chat", "zstd"),
        ("/api/chat", "br"),
        ("/api/pull", "deflate"),
    ],
    ids=["gzip-v1", "zstd-uppercase", "zstd-then-gzip", "zstd-native", "br", "pull"],
)
async def test_codings_ollama_would_not_decode_are_refused(
    proxy, bearer, fake: FakeOllama, path, coding
) -> None:
    """A coding Ollama ignores on that route would hide the model: 415, not sent."""
    body = b'{"model":"llama3.2","messages":[]}'
    resp = await proxy.post(
        path, data=body, headers={**bearer, "Content-Encoding": coding}
    )
    assert resp.status == HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    assert await resp.json() == {
        "error": "Content-Encoding not supported on this route"
    }
    assert fake.received == []


async def test_zstd_bodies_are_checked_and_sent_decoded(
    proxy, bearer, fake: FakeOllama, audit_path
) -> None:
    """On the /v1 routes Ollama decodes zstd: the proxy checks and sends plain JSON."""
    plain = b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}]}'
    resp = await proxy.post(
        "/v1/chat/completions",
        data=zstandard.ZstdCompressor().compress(plain),
        headers={**bearer, "Content-Encoding": "zstd"},
    )
    assert resp.status == HTTPStatus.OK
    await resp.read()
    assert fake.last.body == plain
    assert "Content-Encoding" not in fake.last.headers
    assert fake.last.headers["Content-Length"] == str(len(plain))
    (record,) = await wait_audit(audit_path, 1)
    assert record["model"] == "llama3.2"


async def test_identity_coding_is_plain(proxy, bearer, fake: FakeOllama) -> None:
    """`Content-Encoding: identity` means no coding, as Ollama reads it."""
    resp = await proxy.post(
        "/api/chat",
        json={"model": "llama3.2", "messages": []},
        headers={**bearer, "Content-Encoding": "identity"},
    )
    assert resp.status == HTTPStatus.OK
    assert json.loads(fake.last.body)["model"] == "llama3.2"


async def test_zstd_bombs_and_garbage_are_refused(
    proxy, bearer, fake: FakeOllama
) -> None:
    """Past Ollama's 20 MiB decoded cap is 413; data that is not zstd is 400."""
    bomb = zstandard.ZstdCompressor().compress(
        b'{"model":"llama3.2","prompt":"' + b"a" * (21 * 1024 * 1024) + b'"}'
    )
    headers = {**bearer, "Content-Encoding": "zstd"}
    resp = await proxy.post("/v1/completions", data=bomb, headers=headers)
    assert resp.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    resp = await proxy.post("/v1/completions", data=b"not zstd", headers=headers)
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert await resp.json() == {"error": "request body: invalid zstd data"}
    assert fake.received == []
