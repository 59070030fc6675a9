"""web.cors: cors.origins, preflights without credentials, ACAO on every answer."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from authproxy.config.load import load_config
from authproxy.web.appkeys import VERIFIER_KEY
from authproxy.web.cors import OriginPolicy
from tests.support.audit import read_audit, wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import StartProxy
from tests.support.payloads import SAY_HI

APP = "http://localhost:5173"
PREFLIGHT = {
    "Origin": APP,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}
ORIGINS = "http://localhost:*, https://*.example.com, https://chat.example.org"


@pytest.fixture
async def cors_proxy(start_proxy: StartProxy) -> TestClient[Any, Any]:
    """The proxy with cors.origins set as the environment variable would set it."""
    return await start_proxy({"cors.origins": ORIGINS})


def _cors_headers(resp: Any) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-")}


async def test_preflight_is_answered_without_credentials(
    cors_proxy, fake: FakeOllama, audit_path: Path
) -> None:
    """An allowed origin's preflight: 204 with the CORS headers; nothing goes up."""
    resp = await cors_proxy.options("/v1/chat/completions", headers=PREFLIGHT)
    assert resp.status == HTTPStatus.NO_CONTENT
    assert _cors_headers(resp) == {
        "Access-Control-Allow-Origin": APP,
        "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": resp.headers["Access-Control-Allow-Headers"],
        "Access-Control-Max-Age": "43200",
    }
    allowed = {
        h.strip().lower()
        for h in resp.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type", "x-api-key"} <= allowed
    assert resp.headers.getall("Vary") == ["Origin"]
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert await resp.read() == b""
    assert fake.received == []
    assert cors_proxy.app[VERIFIER_KEY].stats.argon2_verifications == 0
    assert read_audit(audit_path) == []  # like a health probe: no record


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "null",
        "http://localhost.evil.example",
        "https://example.com",
    ],
)
async def test_other_origins_get_no_cors_headers(
    cors_proxy, fake: FakeOllama, origin: str
) -> None:
    """A preflight from another origin is an unauthenticated request: 401, no ACAO."""
    resp = await cors_proxy.options(
        "/v1/chat/completions", headers={**PREFLIGHT, "Origin": origin}
    )
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert _cors_headers(resp) == {}
    assert resp.headers.getall("Vary") == ["Origin"]
    assert fake.received == []


async def test_a_real_request_still_needs_a_key(cors_proxy, fake: FakeOllama) -> None:
    """Without a key an allowed origin gets a 401 it can read: ACAO, exposed headers."""
    resp = await cors_proxy.post("/api/chat", json=SAY_HI, headers={"Origin": APP})
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert await resp.json() == {"error": "unauthorized"}
    assert _cors_headers(resp) == {
        "Access-Control-Allow-Origin": APP,
        "Access-Control-Expose-Headers": "X-Request-ID, Retry-After, WWW-Authenticate",
    }
    assert fake.received == []


async def test_an_allowed_origin_reads_the_stream(
    cors_proxy, bearer, fake: FakeOllama
) -> None:
    """A keyed request from an allowed origin is relayed with ACAO; Origin stays here.

    Ollama's own CORS headers are dropped: only cors.origins decides.
    """
    fake.behaviour.headers = {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Credentials": "true",
    }
    resp = await cors_proxy.post(
        "/api/chat",
        json={**SAY_HI, "stream": True},
        headers={**bearer, "Origin": "https://app.example.com"},
    )
    assert resp.status == HTTPStatus.OK
    assert b'"done":true' in await resp.read()
    assert _cors_headers(resp) == {
        "Access-Control-Allow-Origin": "https://app.example.com",
        "Access-Control-Expose-Headers": "X-Request-ID, Retry-After, WWW-Authenticate",
    }
    assert "Origin" not in fake.last.headers


async def test_another_origin_with_a_key_gets_no_acao(
    cors_proxy, bearer, fake: FakeOllama
) -> None:
    """The key works from anywhere (CORS is the browser's rule); no ACAO for others."""
    fake.behaviour.headers = {"Access-Control-Allow-Origin": "*"}
    resp = await cors_proxy.get(
        "/api/tags", headers={**bearer, "Origin": "http://evil.example"}
    )
    assert resp.status == HTTPStatus.OK
    assert _cors_headers(resp) == {}
    assert "Origin" not in fake.last.headers


async def test_off_by_default(
    proxy, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """No cors.origins: a preflight needs a key, Origin goes upstream, as before."""
    resp = await proxy.options("/api/chat", headers=PREFLIGHT)
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert _cors_headers(resp) == {}
    assert "Vary" not in resp.headers
    fake.behaviour.headers = {"Access-Control-Allow-Origin": APP}
    resp = await proxy.get("/api/tags", headers={**bearer, "Origin": APP})
    assert resp.headers["Access-Control-Allow-Origin"] == APP  # Ollama's, passed on
    assert fake.last.headers["Origin"] == APP
    await wait_audit(audit_path, 2)


@pytest.mark.parametrize(
    ("entries", "origin", "allowed"),
    [
        (["*"], "https://anything.example", True),
        (["*"], "null", False),
        (["*"], "not an origin", False),
        (["https://a.example"], "https://a.example", True),
        (["https://a.example"], "HTTPS://A.EXAMPLE", True),
        (["https://a.example"], "http://a.example", False),
        (["https://a.example"], "https://a.example:8443", False),
        (["http://localhost:*"], "http://localhost:3000", True),
        (["http://localhost:*"], "http://localhost", False),
        (["http://localhost:*"], "http://localhost:3000@evil.example", False),
        (["http://localhost:*"], "http://localhost:3000/x", False),
        (["https://*.example.com"], "https://a.b.example.com", True),
        (["https://*.example.com"], "https://example.com", False),
        (["https://*.example.com"], "https://evilexample.com", False),
        (["https://*.example.com"], "https://evil.com/.example.com", False),
        (["https://*.example.com"], "https://evil.com:1.example.com", False),
        (["chrome-extension://*"], "chrome-extension://abcdefghijklmnop", True),
        ([], "https://a.example", False),
    ],
)
def test_origin_rules(entries: list[str], origin: str, allowed: bool) -> None:
    """Exact origins, ``*`` alone, one ``*`` for host characters or a port."""
    assert OriginPolicy(entries).allows(origin) is allowed


@pytest.mark.parametrize(
    ("environ", "origins"),
    [
        ({}, ""),
        ({"AUTHPROXY_CORS_ORIGINS": ""}, ""),
        ({"AUTHPROXY_CORS_ORIGINS": "*"}, "*"),
        (
            {"AUTHPROXY_CORS_ORIGINS": "http://localhost:*, https://App.Example.com"},
            "http://localhost:*,https://app.example.com",
        ),
    ],
)
def test_the_environment_variable_is_comma_separated(environ, origins) -> None:
    """AUTHPROXY_CORS_ORIGINS takes a comma-separated list, ``*`` unquoted."""
    assert load_config(None, None, environ).cors.origins == origins


@pytest.mark.parametrize(
    "entry",
    ["https://a.example/", "a.example", "http://*.*.example", "null", "http://"],
)
def test_bad_entries_are_refused(entry: str) -> None:
    """An entry that is not an origin stops start-up, naming cors.origins."""
    with pytest.raises(
        ValueError, match=r"^cors\.origins: .* is not '\*' or an origin"
    ):
        load_config(None, {"cors.origins": entry})
