"""auth.admission: the one 401 for every failure, every scheme, the log line."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from http import HTTPStatus

import aiohttp
import pytest
from multidict import CIMultiDict

from authproxy.keys.store import format_token
from authproxy.times import utc_now
from tests.support.auth import assert_rejected, basic_value
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.rawhttp import build_request, send_raw


@pytest.fixture
def bad_headers(key, make_key: MakeKey) -> dict[str, list[tuple[str, str]]]:
    """Every failure kind, keyed by a readable id."""
    token = key.token
    assert token is not None
    key_id, secret = key.record.id, token.split("_", 2)[2]
    expired = make_key("old", expires_at=utc_now() + timedelta(seconds=1))
    other = make_key("bob")
    wrong_secret = format_token(key_id, "A" * 43)
    unknown_id = format_token("aaaaaaaaaaaa", secret)
    return {
        "missing": [],
        "empty-bearer": [("Authorization", "Bearer ")],
        "bearer-garbage": [("Authorization", "Bearer hello")],
        "bearer-unknown-id": [("Authorization", f"Bearer {unknown_id}")],
        "bearer-wrong-secret": [("Authorization", f"Bearer {wrong_secret}")],
        "bearer-truncated": [("Authorization", f"Bearer {token[:-1]}")],
        # The expired key's own secret is told why (tests/web/test_pipeline.py).
        "bearer-expired-wrong-secret": [
            ("Authorization", f"Bearer {format_token(expired.record.id, 'A' * 43)}")
        ],
        "unsupported-scheme": [("Authorization", f"Digest {token}")],
        "basic-bad-base64": [("Authorization", "Basic !!!notbase64")],
        "basic-no-colon": [
            ("Authorization", "Basic " + base64.b64encode(token.encode()).decode())
        ],
        "basic-empty-password": [("Authorization", basic_value("alice", ""))],
        "basic-wrong-user": [("Authorization", basic_value("bob", token))],
        "basic-unknown-user": [("Authorization", basic_value("nobody", token))],
        "basic-other-keys-token": [
            ("Authorization", basic_value("alice", str(other.token)))
        ],
        "basic-wrong-secret": [("Authorization", basic_value("alice", wrong_secret))],
        "x-api-key-wrong": [("x-api-key", wrong_secret)],
        "x-api-key-empty": [("x-api-key", "")],
        "two-authorization": [
            ("Authorization", f"Bearer {token}"),
            ("Authorization", f"Bearer {token}"),
        ],
        "two-api-keys": [("x-api-key", token), ("x-api-key", token)],
        "over-long": [("Authorization", "Bearer " + "a" * 5000)],
        "control-char": [("Authorization", f"Bearer {token}\x01")],
        "non-ascii": [("Authorization", f"Bearer {token}é")],
        "basic-nul": [("Authorization", basic_value("alice\x00", token))],
    }


FAILURES = [
    "missing",
    "empty-bearer",
    "bearer-garbage",
    "bearer-unknown-id",
    "bearer-wrong-secret",
    "bearer-truncated",
    "bearer-expired-wrong-secret",
    "unsupported-scheme",
    "basic-bad-base64",
    "basic-no-colon",
    "basic-empty-password",
    "basic-wrong-user",
    "basic-unknown-user",
    "basic-other-keys-token",
    "basic-wrong-secret",
    "x-api-key-wrong",
    "x-api-key-empty",
    "two-authorization",
    "two-api-keys",
    "over-long",
    "control-char",
    "non-ascii",
    "basic-nul",
]


@pytest.mark.parametrize("case", FAILURES)
async def test_every_failure_gets_the_same_401(
    proxy, start_proxy, fake: FakeOllama, bad_headers, case, secrets_seen
) -> None:
    """Missing, malformed, unknown, wrong, expired: one 401, nothing forwarded."""
    if case == "bearer-expired":
        # A clock 2 s on: the key made to expire in 1 s has expired.
        proxy = await start_proxy(clock=WallClock(utc_now() + timedelta(seconds=2)))
    headers = bad_headers[case]
    if case in {"non-ascii", "control-char"}:
        await _raw_request(proxy, headers, fake)
        return
    await assert_rejected(proxy, fake, CIMultiDict(headers))


async def _raw_request(proxy, headers, fake: FakeOllama) -> None:
    """Send bytes aiohttp's client would refuse to encode."""
    lines = [f"{name}: {value}" for name, value in headers]
    reply = await send_raw(proxy.port, build_request(*lines))
    # A control character is refused by the HTTP parser itself (HTTP/1.0 reply),
    # which still answers with the same 401 and never echoes the bytes.
    assert re.match(rb"HTTP/1\.[01] 401 ", reply)
    assert reply.endswith(b'{"error":"unauthorized"}')
    assert reply.count(b"WWW-Authenticate") == 2
    assert fake.received == []


@pytest.mark.parametrize(
    "scheme", ["bearer", "basic-name", "basic-id", "x-api-key", "url-userinfo"]
)
async def test_each_scheme_authenticates(proxy, fake: FakeOllama, key, scheme) -> None:
    """Bearer, Basic (name or id as username), x-api-key and URL userinfo all work."""
    token = key.token
    headers = {
        "bearer": {"Authorization": f"Bearer {token}"},
        "basic-name": {"Authorization": basic_value("alice", token)},
        "basic-id": {"Authorization": basic_value(key.record.id, token)},
        "x-api-key": {"x-api-key": token},
        "url-userinfo": {},
    }[scheme]
    url = proxy.make_url("/api/tags")
    if scheme == "url-userinfo":
        url = url.with_user("alice").with_password(token)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers) as resp,
    ):
        assert resp.status == HTTPStatus.OK
        assert (await resp.json())["models"]
    assert "Authorization" not in fake.last.headers
    assert "x-api-key" not in fake.last.headers


async def test_auth_failures_are_logged_without_secrets(
    proxy, fake: FakeOllama, key, log_capture
) -> None:
    """A failure is logged with its reason and presented key id, never the secret."""
    wrong = format_token(key.record.id, "C" * 43)
    await assert_rejected(proxy, fake, {"Authorization": f"Bearer {wrong}"})
    events = log_capture.events("auth_failed")
    assert events[-1]["reason"] == "wrong_secret"
    assert events[-1]["key_id"] == key.record.id
    assert events[-1]["scheme"] == "bearer"
    assert "C" * 43 not in log_capture.stream.getvalue()
