"""The ollama CLI through the proxy: every call it makes, signed as OLLAMA_AUTH=1 signs.

``tests.support.ollama.OllamaIdentity`` signs independently of authproxy, from
shared/ollama-wire.md §8c: an Ed25519 key made here, its OpenSSH public key line,
and ``Authorization: <public key>:<signature>`` over ``METHOD,PATH?ts=<ts>``.
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from authproxy.keys.lifecycle import revoke_key, update_key
from authproxy.keys.record import ALL_SCOPES
from authproxy.times import utc_now
from authproxy.web.appkeys import WATCHER_KEY
from tests.support.audit import wait_audit
from tests.support.auth import CHALLENGES
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.ollama import OllamaIdentity
from tests.support.payloads import CHAT

CLI_SCOPES = ("inference", "embeddings", "models:read", "models:manage")
# What `ollama` sends for each command (cmd/cmd.go): the heartbeat first, then
# the command's own request.
CLI_CALLS = [
    ("heartbeat", "HEAD", "/", None),
    ("list", "GET", "/api/tags", None),
    ("ps", "GET", "/api/ps", None),
    ("show", "POST", "/api/show", {"model": "llama3.2"}),
    ("run", "POST", "/api/chat", CHAT),
    ("pull", "POST", "/api/pull", {"model": "llama3.2"}),
    ("embed", "POST", "/api/embed", {"model": "nomic-embed-text", "input": ["a"]}),
]


@pytest.fixture
def identity() -> OllamaIdentity:
    return OllamaIdentity()


@pytest.fixture
def laptop(make_key: MakeKey, identity: OllamaIdentity) -> Any:
    """The developer's key: the CLI's scopes, proved by ``identity``'s signatures."""
    return make_key("laptop", scopes=CLI_SCOPES, ollama_public_key=identity.pub_line)


async def signed(
    client: Any, identity: OllamaIdentity, method: str, path: str, **kwargs: Any
) -> Any:
    """Send one request as the CLI does: signed, with ts in the query."""
    target, headers = identity.sign(method, path, kwargs.pop("ts", None))
    return await client.request(method, target, headers=headers, **kwargs)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [(m, p, b) for _, m, p, b in CLI_CALLS],
    ids=[name for name, *_ in CLI_CALLS],
)
async def test_every_cli_call_passes(
    start_proxy,
    laptop,
    identity,
    fake: FakeOllama,
    audit_path: Path,
    method: str,
    path: str,
    body: Any,
) -> None:
    """Each call the CLI makes is the key's; Ollama gets it, ts and all, and answers."""
    proxy = await start_proxy()
    resp = await signed(proxy, identity, method, path, json=body)
    await resp.read()
    assert resp.status == HTTPStatus.OK
    assert fake.last.method == method
    assert fake.last.path_qs.startswith(f"{path}?ts=")
    assert "Authorization" not in fake.last.headers
    (record,) = await wait_audit(audit_path, 1)
    assert (record["key_id"], record["scheme"], record["outcome"]) == (
        laptop.record.id,
        "ollama-signature",
        "completed",
    )


async def test_run_streams_unchanged(start_proxy, laptop, identity, fake) -> None:
    """`ollama run` gets Ollama's NDJSON stream byte for byte, metered."""
    proxy = await start_proxy()
    resp = await signed(proxy, identity, "POST", "/api/chat", json=CHAT)
    body = await resp.read()
    assert resp.headers["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == "Hi there!"


async def test_pull_needs_models_manage(start_proxy, make_key, identity, fake) -> None:
    """Scopes hold for an ollama key: a default key may not pull."""
    make_key("laptop", ollama_public_key=identity.pub_line)
    proxy = await start_proxy()
    resp = await signed(proxy, identity, "POST", "/api/pull", json={"model": "x"})
    assert resp.status == HTTPStatus.FORBIDDEN
    assert await resp.json() == {"error": "this key lacks the 'models:manage' scope"}
    assert fake.received == []


async def refused(resp: Any, fake: FakeOllama, error: str = "unauthorized") -> None:
    """Assert the 401 (the one every bad credential gets), and that nothing went up."""
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert await resp.json() == {"error": error}
    assert resp.headers.getall("WWW-Authenticate") == CHALLENGES
    assert fake.received == []


async def test_another_private_key_is_refused(
    start_proxy, laptop, identity, fake
) -> None:
    """The registered public key with another key's signature does not pass."""
    proxy = await start_proxy()
    impostor = OllamaIdentity()
    target, headers = impostor.sign("GET", "/api/tags")
    own = headers["Authorization"].split(":", 1)[1]
    headers = {"Authorization": f"{identity.blob}:{own}"}
    await refused(await proxy.get(target, headers=headers), fake)


@pytest.mark.parametrize("offset", [-301, 301], ids=["stale", "future"])
async def test_ts_outside_the_window(
    start_proxy, laptop, identity, fake, offset
) -> None:
    """More than keys.signature_window (5 min) away from now, either way: 401."""
    proxy = await start_proxy()
    ts = int(time.time()) + offset
    await refused(await signed(proxy, identity, "GET", "/api/tags", ts=ts), fake)


async def test_the_window_is_a_setting(start_proxy, laptop, identity, fake) -> None:
    """keys.signature_window narrows it: a minute-old ts fails a 10 s window."""
    proxy = await start_proxy({"keys.signature_window": "10s"})
    ts = int(time.time()) - 60
    await refused(await signed(proxy, identity, "GET", "/api/tags", ts=ts), fake)


async def test_revoked_disabled_and_expired_keys(
    start_proxy, laptop, identity, keys_path: Path, fake
) -> None:
    """Disable, revoke and expiry act at once; a valid signature is told which."""
    clock = WallClock()
    proxy = await start_proxy(clock=clock)
    watcher = proxy.app[WATCHER_KEY]
    expires = clock.now.replace(year=clock.now.year + 1)
    update_key(keys_path, "laptop", {"expires_at": expires}, now=utc_now())
    await watcher.reload(force=True)
    assert (await signed(proxy, identity, "GET", "/api/tags")).status == HTTPStatus.OK
    fake.received.clear()
    clock.advance(days=400)
    ts = int(clock.now.timestamp())
    resp = await signed(proxy, identity, "GET", "/api/tags", ts=ts)
    await refused(resp, fake, "key expired")
    clock.advance(days=-400)
    update_key(keys_path, "laptop", {"disabled": True}, now=utc_now())
    await watcher.reload(force=True)
    await refused(await signed(proxy, identity, "GET", "/api/ps"), fake, "key disabled")
    revoke_key(keys_path, "laptop", now=utc_now())
    await watcher.reload(force=True)
    await refused(await signed(proxy, identity, "GET", "/"), fake, "key revoked")
    stranger = OllamaIdentity()  # a signature that does not verify learns nothing
    resp = await signed(proxy, stranger, "GET", "/api/tags")
    await refused(resp, fake)


async def test_bad_signatures_count_as_guesses(
    start_proxy, laptop, identity, fake
) -> None:
    """Failed signatures feed the brute-force limiter like any bad credential."""
    proxy = await start_proxy({"limits.auth_failures": 3})
    stranger = OllamaIdentity()
    for _ in range(3):
        resp = await signed(proxy, stranger, "GET", "/api/tags")
        assert resp.status == HTTPStatus.UNAUTHORIZED
    resp = await signed(proxy, stranger, "GET", "/api/tags")
    assert resp.status == HTTPStatus.TOO_MANY_REQUESTS
    assert fake.received == []


async def test_an_ollama_key_over_the_admin_api(stack, fake: FakeOllama) -> None:
    """Create with ollama_public_key, then rotate: the old key works for its grace."""
    old, new = OllamaIdentity(), OllamaIdentity()
    status, created = await stack.api(
        "POST",
        "/admin/keys",
        {
            "name": "laptop",
            "ollama_public_key": old.pub_line,
            "scopes": list(ALL_SCOPES),
        },
    )
    assert status == HTTPStatus.CREATED
    assert (created["kind"], created["token"]) == ("ollama", None)
    assert created["fingerprint"].startswith("SHA256:")
    status, rotated = await stack.api(
        "POST",
        "/admin/keys/laptop/rotate",
        {"ollama_public_key": new.pub_line, "grace": "1h"},
    )
    assert status == HTTPStatus.OK
    assert rotated["public_key"] == new.blob
    for identity in (old, new):
        resp = await signed(stack.proxy, identity, "GET", "/api/tags")
        assert resp.status == HTTPStatus.OK
    stack.clock.advance(hours=2)
    ts = int(stack.clock.now.timestamp())
    resp = await signed(stack.proxy, old, "GET", "/api/tags", ts=ts)
    assert resp.status == HTTPStatus.UNAUTHORIZED
    resp = await signed(stack.proxy, new, "GET", "/api/tags", ts=ts)
    assert resp.status == HTTPStatus.OK
