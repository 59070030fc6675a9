"""proxy.upstream: targets joined below the configured base URL, never chosen by it."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer
from yarl import URL

from authproxy.errors import Denied
from authproxy.proxy.upstream import resolve_target, upstream_url
from tests.support.audit import wait_audit
from tests.support.fake_ollama.server import FakeOllama, create_fake
from tests.support.harness import upstream_port
from tests.support.payloads import CHAT
from tests.support.rawhttp import build_request, header_lines, send_raw, status_and_json


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


BASE = URL("http://olla:40114/olla/ollama/")


@pytest.mark.parametrize(
    ("raw_path", "joined"),
    [
        ("/api/tags", "http://olla:40114/olla/ollama/api/tags"),
        ("/", "http://olla:40114/olla/ollama/"),
        (
            "/api/tags?x=%2F&y=/../z",
            "http://olla:40114/olla/ollama/api/tags?x=%2F&y=/../z",
        ),
        ("/v1/models/a%2Fb", "http://olla:40114/olla/ollama/v1/models/a%2Fb"),
        ("/v1/models/a//b", "http://olla:40114/olla/ollama/v1/models/a//b"),
        ("/../api/pull", None),
        ("/api/%2e%2e/%2E%2E/x", None),
        ("/v1/models/..%2F..%2F..%2Fx", None),
        ("/v1/models/..%5C..%5Cx", None),
        ("/v1/models/..\\..\\x", None),
        ("//evil.example/x", None),
        ("http://evil.example/x", None),
        ("@evil.example/x", None),
    ],
    ids=[
        "path",
        "root",
        "query",
        "encoded-slash",
        "inner-double-slash",
        "dot-dot",
        "encoded-dots",
        "encoded-slashes-and-dots",
        "encoded-backslashes",
        "backslashes",
        "network-path",
        "absolute",
        "userinfo",
    ],
)
def test_targets_are_joined_below_the_base_path(raw_path, joined) -> None:
    """Every target lands below the base path, or is refused; none can leave it."""
    url = upstream_url(BASE, raw_path)
    assert (None if url is None else str(url)) == joined
    if url is not None:
        assert url.raw_path.startswith("/olla/ollama/")


def test_remembered_targets_are_judged_as_the_first_time() -> None:
    """The memo of joined targets gives the same URL again, and refuses again."""
    first = resolve_target(BASE, "/api/chat?a=1")
    assert resolve_target(BASE, "/api/chat?a=1") is first
    assert str(first) == str(upstream_url(BASE, "/api/chat?a=1"))
    other = URL("http://other:11434")
    assert (
        str(resolve_target(other, "/api/chat?a=1")) == "http://other:11434/api/chat?a=1"
    )
    for _ in range(2):
        with pytest.raises(Denied) as refused:
            resolve_target(BASE, "/api/%2e%2e/%2e%2e/x")
        assert refused.value.status == 400


def test_the_target_memo_stays_bounded() -> None:
    """A client inventing targets cannot grow the memo past its bound."""
    from authproxy.proxy import upstream  # noqa: PLC0415 - the module's memo

    for n in range(upstream._TARGETS_KEPT + 10):
        resolve_target(BASE, f"/api/tags?n={n}")
    assert len(upstream._TARGETS) <= upstream._TARGETS_KEPT


@pytest.fixture
async def gateway(aiohttp_server: AiohttpServer, fake: FakeOllama) -> TestServer:
    """The fake Ollama below /olla/ollama, as Olla or a gateway route serves it."""
    return await aiohttp_server(
        create_fake(fake, base_path="/olla/ollama"), auto_decompress=False
    )


async def test_requests_are_forwarded_below_the_base_path(
    start_proxy, gateway: TestServer, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """With a base path, base + path goes upstream; the audit has the client's path."""
    client = await start_proxy({"upstream.url": str(gateway.make_url("/olla/ollama"))})
    resp = await client.post("/api/chat", json=CHAT, headers=bearer)
    assert resp.status == HTTPStatus.OK
    assert fake.last.path_qs == "/olla/ollama/api/chat"
    assert (await client.get("/readyz")).status == HTTPStatus.OK
    assert (
        fake.last.path_qs == "/olla/ollama/"
    )  # the probe asks the base, Ollama's root
    [record] = await wait_audit(audit_path, 1)
    assert (record["path"], record["model"], record["prompt_tokens"]) == (
        "/api/chat",
        "llama3.2",
        26,
    )


@pytest.mark.parametrize(
    "target",
    [
        "/../x",
        "/api/%2e%2e/%2e%2e/x",
        "/v1/models/..%2F..%2Fx",
        "//evil.example/olla/ollama/api/tags",
        "/api/tags/..\\..\\..\\x",
    ],
)
async def test_a_client_cannot_leave_the_base_path(
    start_proxy, gateway: TestServer, bearer, fake: FakeOllama, target: str
) -> None:
    """Dot segments (encoded, with backslashes) and // are refused: nothing goes up."""
    client = await start_proxy({"upstream.url": str(gateway.make_url("/olla/ollama"))})
    reply = await send_raw(
        client.port, build_request(*header_lines(bearer), target=target)
    )
    assert status_and_json(reply) == (400, {"error": "invalid request target"})
    assert fake.received == []
