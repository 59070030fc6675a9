"""proxy.upstream: targets joined to the configured origin, never chosen by it."""

from __future__ import annotations

import pytest

from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import upstream_port
from tests.support.rawhttp import build_request, header_lines, send_raw


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
    reply = await send_raw(
        proxy.port, build_request(*header_lines(bearer), target=raw_path)
    )
    assert reply.startswith(b"HTTP/1.1 ")
    assert fake.last.path_qs == raw_path
    assert fake.last.headers["Host"] == f"127.0.0.1:{upstream_port(proxy)}"


async def test_absolute_form_target_is_rejected(
    proxy, bearer, fake: FakeOllama
) -> None:
    """An absolute-form request target never chooses the upstream host."""
    request = build_request(
        *header_lines(bearer),
        target="http://evil.example/api/tags",
        host="evil.example",
    )
    reply = await send_raw(proxy.port, request)
    assert reply.startswith(b"HTTP/1.1 400")
    assert b'{"error":"invalid request target"}' in reply
    assert fake.received == []
