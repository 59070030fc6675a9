"""web.pipeline: authenticate, then admit by the key's limits, then forward."""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

from authproxy.keys.store import format_token
from tests.support.audit import wait_audit
from tests.support.auth import bearer_auth
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
