"""web.pipeline: authenticate, then admit by the key's limits, then forward."""

from __future__ import annotations

from datetime import timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from authproxy.auth.minting import mint_key_token
from authproxy.keys.lifecycle import revoke_key, update_key
from authproxy.keys.store import format_token
from authproxy.times import utc_now
from authproxy.web.appkeys import VERIFIER_KEY, WATCHER_KEY
from tests.support.audit import wait_audit
from tests.support.auth import CHALLENGES, basic_auth, bearer_auth
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.ollama import OllamaIdentity
from tests.support.payloads import CHAT
from tests.support.rawhttp import build_request, header_lines, send_raw, status_and_json


async def test_a_refusal_after_admission_gives_the_slot_back(
    start_proxy, make_key: MakeKey
) -> None:
    """A request refused by the policy after admission releases its concurrency slot."""
    limited = make_key("one", models=["qwen3:*"], limits={"concurrent": 1})
    client = await start_proxy()
    auth = bearer_auth(limited.token)
    for _ in range(3):
        resp = await client.post("/api/chat", json=CHAT, headers=auth)
        assert resp.status == HTTPStatus.FORBIDDEN  # not 429: the slot came back
    assert (await client.get("/api/tags", headers=auth)).status == HTTPStatus.OK


async def test_authentication_comes_before_the_keys_limits(
    start_proxy, make_key: MakeKey
) -> None:
    """A wrong secret for a key whose rate is used up is a 401, never its 429."""
    limited = make_key("rpm", limits={"requests_per_minute": 1})
    client = await start_proxy()
    assert (
        await client.get("/api/tags", headers=bearer_auth(limited.token))
    ).status == HTTPStatus.OK
    wrong = bearer_auth(format_token(limited.record.id, "W" * 43))
    assert (await client.get("/api/tags", headers=wrong)).status == 401
    resp = await client.get("/api/tags", headers=bearer_auth(limited.token))
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS


async def test_the_signature_covers_the_path_as_sent(
    start_proxy, make_key: MakeKey
) -> None:
    """The request line as sent is what a signature must cover; a re-spelling fails."""
    identity = OllamaIdentity()
    make_key("laptop", ollama_public_key=identity.pub_line, scopes=["models:read"])
    client = await start_proxy()
    target, headers = identity.sign("GET", "/api/tags")
    respelled = target.replace("/api/tags", "/api/%74ags")  # the same path, for Go
    reply = await send_raw(
        client.port, build_request(*header_lines(headers), target=respelled)
    )
    assert status_and_json(reply) == (401, {"error": "unauthorized"})
    assert (await client.get(target, headers=headers)).status == HTTPStatus.OK


async def test_a_refused_signature_is_recorded_with_its_key(
    start_proxy, make_key: MakeKey, audit_path: Path
) -> None:
    """The audit record of a bad signature names its scheme and the key it claimed."""
    identity = OllamaIdentity()
    created = make_key("laptop", ollama_public_key=identity.pub_line)
    client = await start_proxy()
    target, headers = identity.sign("GET", "/api/ps")  # signed for another path
    await client.get("/api/tags" + target.removeprefix("/api/ps"), headers=headers)
    target, headers = OllamaIdentity().sign("GET", "/api/tags")  # no such key
    await client.get(target, headers=headers)
    records = await wait_audit(audit_path, 2)
    assert [(r["status"], r["reason"], r["scheme"], r["key_id"]) for r in records] == [
        (401, "wrong_secret", "ollama-signature", created.record.id),
        (401, "unknown_key", "ollama-signature", None),
    ]


PASSWORD = "correct horse battery"


async def _refuse_state(
    client: Any, keys_path: Path, clock: WallClock, state: str, names: list[str]
) -> None:
    """Revoke, disable or expire (by moving the clock) the named keys."""
    for name in names:
        if state == "revoked":
            revoke_key(keys_path, name, now=utc_now())
        elif state == "disabled":
            update_key(keys_path, name, {"disabled": True}, now=utc_now())
    if state == "expired":
        clock.advance(hours=2)
    await client.app[WATCHER_KEY].reload(force=True)


@pytest.mark.parametrize("state", ["revoked", "disabled", "expired"])
async def test_a_proved_key_is_told_its_state(
    start_proxy,
    make_key: MakeKey,
    keys_path: Path,
    fake: FakeOllama,
    audit_path: Path,
    secrets_seen,
    state: str,
) -> None:
    """The right secret of a revoked, disabled or expired key gets "key <state>".

    Whatever the scheme (Bearer, x-api-key, Basic with a token or a password,
    a JWT minted for the key); the challenges stay, nothing goes upstream,
    and the audit record says why.
    """
    expires = {"expires_at": utc_now() + timedelta(hours=1)}
    tok = make_key("tok", **expires)
    make_key("pw", password=PASSWORD, **expires)
    clock = WallClock()
    client = await start_proxy(clock=clock)
    verifier = client.app[VERIFIER_KEY]
    assert verifier.signing_keys is not None
    assert tok.token is not None
    jwt = mint_key_token(
        verifier.signing_keys,
        tok.record,
        ttl=timedelta(hours=3),
        max_ttl=timedelta(hours=3),
        now=clock.now,
    )["token"]
    secrets_seen.add(jwt)
    proofs = {
        "bearer": bearer_auth(tok.token),
        "x-api-key": {"x-api-key": tok.token},
        "basic-token": basic_auth("tok", tok.token),
        "basic-password": basic_auth("pw", PASSWORD),
        "jwt": bearer_auth(jwt),
    }
    await _refuse_state(client, keys_path, clock, state, ["tok", "pw"])
    for scheme, headers in proofs.items():
        for _ in range(2):  # verified, then from the cache
            resp = await client.get("/api/tags", headers=headers)
            assert resp.status == HTTPStatus.UNAUTHORIZED, scheme
            assert await resp.json() == {"error": f"key {state}"}, scheme
            assert resp.headers.getall("WWW-Authenticate") == CHALLENGES
    assert fake.received == []
    records = await wait_audit(audit_path, 2 * len(proofs))
    assert {r["reason"] for r in records} == {f"key_{state}"}


@pytest.mark.parametrize("state", ["revoked", "disabled", "expired"])
async def test_a_wrong_secret_learns_nothing_of_the_state(
    start_proxy, make_key: MakeKey, keys_path: Path, fake: FakeOllama, state: str
) -> None:
    """Without the key's secret, a revoked, disabled or expired key gets the one 401.

    So the state is no oracle: an unknown id, a wrong token, a wrong password
    and a rotated-out secret past its grace are answered alike.
    """
    expires = {"expires_at": utc_now() + timedelta(hours=1)}
    tok = make_key("tok", **expires)
    make_key("pw", password=PASSWORD, **expires)
    clock = WallClock()
    client = await start_proxy(clock=clock)
    await _refuse_state(client, keys_path, clock, state, ["tok", "pw"])
    guesses = [
        bearer_auth(format_token(tok.record.id, "W" * 43)),
        {"x-api-key": format_token(tok.record.id, "W" * 43)},
        basic_auth("tok", format_token(tok.record.id, "W" * 43)),
        basic_auth("pw", "wrong horse battery"),
        bearer_auth(format_token("aaaaaaaaaaaa", "W" * 43)),
    ]
    for headers in guesses:
        resp = await client.get("/api/tags", headers=headers)
        assert resp.status == HTTPStatus.UNAUTHORIZED
        assert await resp.json() == {"error": "unauthorized"}
    assert fake.received == []


async def test_a_rotated_out_secret_past_its_grace_is_a_wrong_secret(
    stack, key, fake: FakeOllama
) -> None:
    """An old secret past its rotation grace gets the one 401, not "key rotated"."""
    status, _ = await stack.api("POST", "/admin/keys/alice/rotate", {"grace": "1m"})
    assert status == HTTPStatus.OK
    headers = bearer_auth(key.token)
    assert (await stack.proxy.get("/api/tags", headers=headers)).status == 200
    stack.clock.advance(minutes=2)
    fake.received.clear()
    resp = await stack.proxy.get("/api/tags", headers=headers)
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert await resp.json() == {"error": "unauthorized"}
    assert fake.received == []
