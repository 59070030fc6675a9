"""proxy.handler: sending upstream; an unreachable or slow upstream, a client gone."""

from __future__ import annotations

import time
from http import HTTPStatus

import aiohttp
import pytest

from tests.support.fake_ollama.server import FakeOllama
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
