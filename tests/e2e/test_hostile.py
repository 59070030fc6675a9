"""Hostile input on raw sockets: each malformed request gets a 4xx, reaches nothing."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authproxy.web.appkeys import UPSTREAM_KEY
from tests.support.auth import basic_value
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import StartProxy
from tests.support.rawhttp import build_request, header_lines, send_raw, status_and_json

MALFORMED: list[tuple[str, bytes, int, str]] = [
    (
        "content-length-and-chunked",
        build_request(
            "Content-Length: 5",
            "Transfer-Encoding: chunked",
            method="POST",
            body=b"0\r\n\r\n",
        ),
        400,
        "bad request",
    ),
    (
        "duplicate-content-length",
        build_request(
            "Content-Length: 5", "Content-Length: 6", method="POST", body=b"hello!"
        ),
        400,
        "bad request",
    ),
    ("obsolete-line-folding", build_request("X-A: a", " b"), 400, "bad request"),
    (
        "bad-transfer-encoding",
        build_request("Transfer-Encoding: gzip, chunked2", method="POST"),
        400,
        "bad request",
    ),
    ("space-before-colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "bad request"),
    ("bare-lf", b"GET / HTTP/1.1\nHost: x\n\n", 400, "bad request"),
    (
        "control-char-in-method",
        b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
        400,
        "bad request",
    ),
    ("nul-in-other-header", build_request("X-A: a\x00b"), 400, "bad request"),
    (
        "request-line-too-long",
        build_request(target="/" + "a" * 9000),
        431,
        "request line or headers too large",
    ),
    (
        "header-too-long",
        build_request("X-A: " + "a" * 9000),
        431,
        "request line or headers too large",
    ),
    (
        "too-many-headers",
        build_request(*(f"X-{i}: a" for i in range(150))),
        431,
        "request line or headers too large",
    ),
    (
        "nul-in-authorization",
        build_request("Authorization: Bearer ap_x\x00"),
        401,
        "unauthorized",
    ),
    (
        "control-char-in-api-key",
        build_request("x-api-key: ab\x7fcd"),
        401,
        "unauthorized",
    ),
    (
        "non-ascii-credential",
        build_request("Authorization: Bearer ap_é"),
        401,
        "unauthorized",
    ),
    (
        "over-long-credential",
        build_request("Authorization: Bearer " + "a" * 5000),
        401,
        "unauthorized",
    ),
    ("invalid-base64", build_request("Authorization: Basic !!!"), 401, "unauthorized"),
    (
        "basic-without-colon",
        build_request("Authorization: " + basic_value("justaname")),
        401,
        "unauthorized",
    ),
    (
        "basic-non-utf8",
        build_request(
            "Authorization: Basic " + base64.b64encode(b"u:\xff\xfe").decode()
        ),
        401,
        "unauthorized",
    ),
    (
        "two-authorization-headers",
        build_request("Authorization: Bearer a", "Authorization: Bearer b"),
        401,
        "unauthorized",
    ),
    ("empty-bearer", build_request("Authorization: Bearer"), 401, "unauthorized"),
]


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [m[1:] for m in MALFORMED],
    ids=[m[0] for m in MALFORMED],
)
async def test_malformed_requests(proxy, fake: FakeOllama, data, status, error) -> None:
    """Each hostile request gets its 4xx with a JSON error and never reaches Ollama."""
    reply = await send_raw(proxy.port, data)
    got, body = status_and_json(reply)
    assert (got, body) == (status, {"error": error})
    assert b"\x00" not in reply
    assert b"aaaa" not in reply  # nothing of the request is echoed
    assert fake.received == []


async def test_absolute_form_target(proxy, bearer, fake: FakeOllama) -> None:
    """An absolute-form target never picks the host: 401 without a key, else 400."""
    target = "http://evil.example/api/tags"
    reply = await send_raw(proxy.port, build_request(target=target))
    assert status_and_json(reply) == (401, {"error": "unauthorized"})
    reply = await send_raw(
        proxy.port, build_request(*header_lines(bearer), target=target)
    )
    assert status_and_json(reply) == (400, {"error": "invalid request target"})
    assert fake.received == []


async def test_parser_errors_do_not_echo_credentials(proxy, token, log_capture) -> None:
    """A credential inside a malformed request is neither echoed nor logged."""
    reply = await send_raw(
        proxy.port, build_request(f"Authorization: Bearer {token}\x00")
    )
    assert token.encode() not in reply
    assert token not in log_capture.stream.getvalue()


@pytest.mark.parametrize(
    "target",
    [
        "/api%2Ftags",
        "/api/tags?x=http://evil.example/",
        "/@evil.example/",
    ],
)
async def test_paths_never_leave_the_upstream(
    proxy, bearer, fake: FakeOllama, target
) -> None:
    """Odd paths are forwarded as received, to the configured origin only."""
    reply = await send_raw(
        proxy.port, build_request(*header_lines(bearer), target=target)
    )
    assert re.match(rb"HTTP/1\.1 (200|404) ", reply)
    assert fake.last.path_qs == target
    port = proxy.app[UPSTREAM_KEY].origin.port
    assert fake.last.headers["Host"] == f"127.0.0.1:{port}"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/api/tags",
        "/../../etc/passwd",
        "/api/%2e%2e/%2e%2e/admin/keys",
        "/v1/models/../../api/pull",
        "/v1/models/%2E%2E/%2e%2E/api/pull",
        "/v1/models/./x",
        "/api/tags/.",
        "/v1/models/..%2F..%2Fapi%2Fpull",
    ],
)
async def test_dot_segments_are_refused(
    proxy, bearer, fake: FakeOllama, target
) -> None:
    """Targets another server could resolve to another route are never forwarded."""
    reply = await send_raw(
        proxy.port, build_request(*header_lines(bearer), target=target)
    )
    assert status_and_json(reply) == (400, {"error": "invalid request target"})
    assert fake.received == []


async def test_unauthenticated_odd_paths_are_refused(proxy, fake: FakeOllama) -> None:
    """Without a credential no path, however odd, is forwarded."""
    for target in [
        "//evil.example/",
        "/%2e%2e/",
        "/admin/keys",
        "/healthz/../api/tags",
    ]:
        reply = await send_raw(proxy.port, build_request(target=target))
        assert status_and_json(reply) == (401, {"error": "unauthorized"}), target
    assert fake.received == []


HEADER_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=120,
)


AUTH_VALUES = st.one_of(
    HEADER_TEXT.map(lambda t: "Bearer " + t),
    HEADER_TEXT.map(lambda t: "Basic " + t),
    st.binary(max_size=60).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    HEADER_TEXT,
)


PATHS = st.lists(
    st.sampled_from(
        ["api", "v1", "..", ".", "%2e", "%2F", "", "chat", "tags", "admin", "@", "x:y"]
    ),
    max_size=5,
).map(lambda parts: "/" + "/".join(parts))


@pytest.fixture
async def unlimited(start_proxy: StartProxy) -> TestClient[Any, Any]:
    """The proxy with the brute-force limiter off: no guess is turned away early."""
    return await start_proxy({"limits.auth_failures": 0})


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    auth=st.one_of(st.none(), AUTH_VALUES),
    path=PATHS,
    method=st.sampled_from(["GET", "POST", "DELETE", "OPTIONS", "PATCH"]),
)
async def test_routing_fuzz_no_5xx_nothing_unauthenticated(
    unlimited, bearer, fake: FakeOllama, auth: str | None, path: str, method: str
) -> None:
    """Random credentials, paths, methods: no 5xx, nothing forwarded unauthenticated.

    With the limiter off no example is a 429 before routing; each path and
    method is then sent again with a valid key, and routing (not
    authentication) answers it: forwarded once, or refused with a 4xx.
    """
    fake.received.clear()
    headers = [] if auth is None else [f"Authorization: {auth}"]
    data = build_request(*headers, target=path, method=method)
    reply = await send_raw(unlimited.port, data)
    status = int(reply.split(b" ", 2)[1])
    assert status < 500
    assert fake.received == []
    assert re.match(rb"HTTP/1\.[01] (400|401|404|431) ", reply)  # never 429
    routed = await send_raw(
        unlimited.port, build_request(*header_lines(bearer), target=path, method=method)
    )
    status = int(routed.split(b" ", 2)[1])
    assert status < 500
    assert status not in {401, 429}, routed
    if not fake.received:
        assert 400 <= status < 500, routed
        assert b'{"error":' in routed
    assert len(fake.received) <= 1
