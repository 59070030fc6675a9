"""proxy.handler: sending upstream; an unreachable or slow upstream, a client gone."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from http import HTTPStatus
from typing import Any

import aiohttp
import pytest
import trustme
from pytest_aiohttp import AiohttpServer

from tests.support.fake_ollama.server import FakeOllama, create_fake
from tests.support.payloads import SAY_HI
from tests.support.polling import upstream_saw_disconnect
from tests.support.rawhttp import closed_port


async def test_client_disconnect_before_headers(
    proxy, bearer, fake: FakeOllama
) -> None:
    """A client that gives up while the model loads cancels the upstream request too."""
    fake.behaviour.header_delay = 30
    with pytest.raises(TimeoutError):
        await proxy.post(
            "/api/chat",
            json=SAY_HI,
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
        "/api/chat", json=SAY_HI, headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.GATEWAY_TIMEOUT
    assert await resp.json() == {"error": "upstream timed out"}


async def _fails(client: Any, bearer: dict[str, str], status: int, error: str) -> None:
    """Assert the client gets the generic JSON for an upstream failure."""
    resp = await client.get("/api/tags", headers=bearer)
    assert resp.status == status
    assert await resp.json() == {"error": error}


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a new connection hangs in SYN-SENT."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        filler.connect(("127.0.0.1", port))
        yield port


@pytest.fixture
async def hangs_up() -> AsyncIterator[int]:
    """A port whose server reads the request and closes without answering."""

    async def close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0)
    async with server:
        yield int(server.sockets[0].getsockname()[1])


async def test_refused_connection_is_named(start_proxy, bearer, log_capture) -> None:
    """A refused connection logs the upstream URL and "connect refused"."""
    port = closed_port()
    client = await start_proxy({"upstream.url": f"http://127.0.0.1:{port}"})
    await _fails(client, bearer, 502, "upstream unavailable")
    [event] = log_capture.events("upstream_failed")
    assert event["upstream"] == f"http://127.0.0.1:{port}/api/tags"
    assert (event["reason"], event["phase"]) == ("connect refused", "connect")
    assert "error" not in event  # no exception class


async def test_failed_dns_lookup_names_the_host(
    start_proxy, bearer, log_capture
) -> None:
    """A host that does not resolve logs "DNS lookup failed (<host>)"; 502."""
    client = await start_proxy({"upstream.url": "http://ollama.invalid:11434"})
    await _fails(client, bearer, 502, "upstream unavailable")
    [event] = log_capture.events("upstream_failed")
    assert event["reason"] == "DNS lookup failed (ollama.invalid)"


async def test_connect_timeout_is_named(
    start_proxy, bearer, log_capture, full_backlog: int
) -> None:
    """Not accepted within upstream.connect_timeout: 504, "connect timeout"."""
    client = await start_proxy(
        {
            "upstream.url": f"http://127.0.0.1:{full_backlog}",
            "upstream.connect_timeout": 0.3,
        }
    )
    await _fails(client, bearer, 504, "upstream timed out")
    [event] = log_capture.events("upstream_timeout")
    assert event["reason"] == "connect timeout"


async def test_read_timeout_is_named(
    start_proxy, bearer, fake: FakeOllama, log_capture
) -> None:
    """No response headers within upstream.response_timeout: "read timeout"."""
    fake.behaviour.header_delay = 3
    client = await start_proxy({"upstream.response_timeout": 0.3})
    resp = await client.post("/api/chat", json=SAY_HI, headers=bearer)
    assert resp.status == HTTPStatus.GATEWAY_TIMEOUT
    assert await resp.json() == {"error": "upstream timed out"}
    [event] = log_capture.events("upstream_timeout")
    assert (event["reason"], event["phase"]) == ("read timeout", "response_headers")


async def test_upstream_hanging_up_is_named(
    start_proxy, bearer, log_capture, hangs_up: int
) -> None:
    """An upstream that closes without a reply: "upstream closed connection"."""
    client = await start_proxy({"upstream.url": f"http://127.0.0.1:{hangs_up}"})
    await _fails(client, bearer, 502, "upstream unavailable")
    [event] = log_capture.events("upstream_failed")
    assert event["reason"] == "upstream closed connection"


async def test_tls_to_a_plain_upstream_is_named(
    start_proxy, bearer, upstream, log_capture
) -> None:
    """https:// to a plain-HTTP Ollama logs a TLS handshake failure; 502."""
    client = await start_proxy({"upstream.url": f"https://127.0.0.1:{upstream.port}"})
    await _fails(client, bearer, 502, "upstream unavailable")
    [event] = log_capture.events("upstream_failed")
    assert event["reason"].startswith("TLS handshake failed (")


async def test_untrusted_upstream_certificate_is_named(
    start_proxy, bearer, aiohttp_server: AiohttpServer, log_capture
) -> None:
    """An upstream certificate no trusted CA signed logs why it failed to verify."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(ctx)
    server = await aiohttp_server(create_fake(), ssl=ctx)
    client = await start_proxy({"upstream.url": f"https://127.0.0.1:{server.port}"})
    await _fails(client, bearer, 502, "upstream unavailable")
    [event] = log_capture.events("upstream_failed")
    assert event["reason"].startswith("TLS certificate verify failed (")
    assert event["reason"] != "TLS certificate verify failed (untrusted)"
