"""auth.signature: the ollama CLI's OLLAMA_AUTH signatures, each once, in time."""

from __future__ import annotations

import time
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.admin.app import create_admin_app
from authproxy.auth.credentials import CredentialError
from authproxy.auth.signature import SeenSignatures, signature_valid, signed_challenge
from authproxy.keys.record import ALL_SCOPES
from authproxy.web.appkeys import VERIFIER_KEY
from tests.support.audit import wait_audit
from tests.support.auth import CHALLENGES
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.ollama import OllamaIdentity

NOW = 1_733_079_600


class TestChallenge:
    def test_the_challenge_is_what_the_cli_signs(self) -> None:
        """Method, path as sent and the one ts value make the signed text."""
        challenge, ts = signed_challenge("POST", "/api/chat", f"ts={NOW}", NOW, 300)
        assert (challenge, ts) == (f"POST,/api/chat?ts={NOW}".encode(), NOW)
        challenge, _ = signed_challenge("GET", "/", f"x=1&ts={NOW}&y", NOW, 300)
        assert challenge == f"GET,/?ts={NOW}".encode()

    @pytest.mark.parametrize(
        ("query", "reason"),
        [
            ("", "malformed"),
            ("ts=", "malformed"),
            (f"ts={NOW}&ts={NOW}", "malformed"),
            ("ts=-5", "malformed"),
            ("ts=1e9", "malformed"),
            ("ts=\u0661\u0662", "malformed"),
            (f"ts={NOW - 301}", "signature_expired"),
            (f"ts={NOW + 301}", "signature_expired"),
        ],
        ids=[
            "none",
            "empty",
            "twice",
            "negative",
            "float",
            "non-ascii",
            "old",
            "future",
        ],
    )
    def test_ts_must_be_one_fresh_number(self, query: str, reason: str) -> None:
        """A missing, repeated or odd ts, or one outside the window, is refused."""
        with pytest.raises(CredentialError) as info:
            signed_challenge("GET", "/api/tags", query, NOW, 300)
        assert info.value.reason == reason

    def test_the_window_is_inclusive(self) -> None:
        """A ts exactly the window away, either way, is still accepted."""
        for ts in (NOW - 300, NOW + 300):
            assert signed_challenge("GET", "/", f"ts={ts}", NOW, 300)[1] == ts


class TestSignatureValid:
    def test_only_the_keys_signature_of_that_text_verifies(self) -> None:
        """Another text, another key or a garbled signature does not verify."""
        alice, mallory = OllamaIdentity(), OllamaIdentity()
        text = f"GET,/api/tags?ts={NOW}".encode()
        good = alice.signature("GET", "/api/tags", NOW)
        assert signature_valid(alice.blob, good, text) is True
        assert signature_valid(alice.blob, good, text.replace(b"GET", b"PUT")) is False
        assert signature_valid(mallory.blob, good, text) is False
        assert signature_valid(alice.blob, "!" + good[1:], text) is False
        assert signature_valid("AAAA", good, text) is False


class TestSeenSignatures:
    def test_each_signature_is_accepted_once(self) -> None:
        """The second use of a signature within its window is a replay."""
        seen = SeenSignatures(window=300)
        assert seen.first_use("sig-a", NOW, NOW) is True
        assert seen.first_use("sig-a", NOW, NOW + 10) is False
        assert seen.first_use("sig-b", NOW, NOW + 10) is True

    def test_entries_are_forgotten_once_their_ts_is_stale(self) -> None:
        """Past ts + window a signature is forgotten (its ts is refused anyway)."""
        seen = SeenSignatures(window=300)
        seen.first_use("sig-a", NOW, NOW)
        seen.first_use("sig-b", NOW + 200, NOW)
        seen.first_use("sig-c", NOW + 400, NOW + 301)
        assert "sig-a" not in seen._until
        assert set(seen._until) == {"sig-b", "sig-c"}

    def test_a_full_memory_refuses_rather_than_forgets(self) -> None:
        """At max_entries live signatures a new one is refused; stale ones make room."""
        seen = SeenSignatures(window=300, max_entries=2)
        assert seen.first_use("sig-a", NOW + 250, NOW) is True
        assert seen.first_use("sig-b", NOW - 250, NOW) is True
        assert seen.first_use("sig-c", NOW, NOW) is False
        # sig-b's window ended at NOW + 50; it is not first in line, yet dropped.
        assert seen.first_use("sig-c", NOW, NOW + 60) is True
        assert set(seen._until) == {"sig-a", "sig-c"}


# --- through the proxy -----------------------------------------------------------


@pytest.fixture
def identity() -> OllamaIdentity:
    return OllamaIdentity()


@pytest.fixture
def ollama_key(make_key: MakeKey, identity: OllamaIdentity):
    """An ollama key (every scope) registered for ``identity``'s public key."""
    return make_key("laptop", ollama_public_key=identity.pub_line, scopes=ALL_SCOPES)


async def test_a_signed_request_is_the_keys(
    start_proxy, ollama_key, identity, fake: FakeOllama, audit_path: Path
) -> None:
    """A fresh signature by a registered key authenticates; ts goes upstream."""
    client = await start_proxy()
    target, headers = identity.sign("GET", "/api/tags")
    resp = await client.get(target, headers=headers)
    assert resp.status == HTTPStatus.OK
    assert fake.last.path_qs == target
    assert "Authorization" not in fake.last.headers
    (record,) = await wait_audit(audit_path, 1)
    assert (record["scheme"], record["key_id"], record["key_name"]) == (
        "ollama-signature",
        ollama_key.record.id,
        "laptop",
    )
    stats = client.app[VERIFIER_KEY].stats
    assert (stats.signature_verifications, stats.argon2_verifications) == (1, 0)


@pytest.mark.parametrize(
    "case", ["replayed", "stale", "other-path", "other-method", "no-ts", "unknown-key"]
)
async def test_bad_signatures_get_the_one_401(
    start_proxy, ollama_key, identity, fake: FakeOllama, case: str
) -> None:
    """A replay, a stale ts, another request's signature or key: the usual 401."""
    client = await start_proxy()
    signer = OllamaIdentity() if case == "unknown-key" else identity
    ts = int(time.time()) - 301 if case == "stale" else None
    signed_path = "/api/ps" if case == "other-path" else "/api/tags"
    method = "POST" if case == "other-method" else "GET"
    target, headers = signer.sign(method, signed_path, ts)
    target = "/api/tags" + target.removeprefix(signed_path)
    if case == "no-ts":
        target = "/api/tags"
    if case == "replayed":
        assert (await client.get(target, headers=headers)).status == HTTPStatus.OK
        fake.received.clear()
    resp = await client.get(target, headers=headers)
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert await resp.json() == {"error": "unauthorized"}
    assert resp.headers.getall("WWW-Authenticate") == CHALLENGES
    assert fake.received == []


async def test_the_admin_api_takes_no_signatures(
    start_proxy, aiohttp_client, make_key: MakeKey, identity: OllamaIdentity
) -> None:
    """Even an admin-scoped ollama key cannot sign its way into the admin API."""
    make_key("ops-laptop", ollama_public_key=identity.pub_line, scopes=["admin"])
    proxy = await start_proxy()
    admin = await aiohttp_client(create_admin_app(proxy.app))
    target, headers = identity.sign("GET", "/admin/keys")
    resp = await admin.get(target, headers=headers)
    assert resp.status == HTTPStatus.UNAUTHORIZED
