"""`authproxy serve` with TLS: certificate reload, redirects, HTTPS health checks."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from authproxy.cli.main import main
from tests.support.fake_ollama.server import FakeOllama
from tests.support.logs import Secrets
from tests.support.payloads import GENERATE
from tests.support.rawhttp import send_raw
from tests.support.serving import ServeProcess, first_token
from tests.support.tls import (
    client_context,
    der,
    healthz,
    peer_certificate,
    write_pair,
)


class TLSServe(ServeProcess):
    """A running `authproxy serve` with TLS on, and its start-up event."""

    def https(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {first_token(self)}"}


StartServe = Callable[[dict[str, Any]], Awaitable[TLSServe]]


@pytest.fixture
async def start_tls(
    tmp_path: Path, tls_overrides: dict[str, Any], secrets_seen: Secrets
) -> AsyncIterator[StartServe]:
    """Start `authproxy serve` processes with TLS; polling is off unless asked."""
    started: list[TLSServe] = []

    async def start(extra: dict[str, Any]) -> TLSServe:
        config = {
            **tls_overrides,
            "keys.reload_interval": "1h",
            "tls.reload_interval": "1h",
            "log.format": "json",
            **extra,
        }
        server = await TLSServe.spawn(config, tmp_path / "serve.yaml")
        started.append(server)
        await server.until_started()
        secrets_seen.add(first_token(server))
        return server

    yield start
    for server in started:
        if server.proc.returncode is None:
            # SIGTERM, not SIGKILL: a clean exit is part of what is tested.
            server.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await server.proc.wait() == 0
        output = "".join(server.lines)
        assert "PRIVATE KEY" not in output
        for secret in secrets_seen.values:
            assert output.count(secret) <= 1, "a secret was printed more than once"


async def test_sighup_reload_keeps_the_open_stream(
    start_tls: StartServe,
    ca: trustme.CA,
    leaf: trustme.LeafCert,
    pair: tuple[Path, Path],
    fake: FakeOllama,
) -> None:
    """After SIGHUP new connections get the new certificate; an open stream finishes."""
    server = await start_tls({})
    assert server.started["scheme"] == "https"
    fake.behaviour.tokens = [f"t{i} " for i in range(60)]
    fake.behaviour.chunk_delay = 0.05
    ca_b = trustme.CA()
    leaf_b = ca_b.issue_cert("127.0.0.1")
    connector = aiohttp.TCPConnector(ssl=client_context(ca))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            server.https("/api/generate"), json=GENERATE, headers=server.bearer
        ) as resp,
    ):
        assert resp.status == HTTPStatus.OK
        first = await resp.content.readany()
        write_pair(leaf_b, pair[0].parent)
        server.proc.send_signal(signal.SIGHUP)
        reloaded = await server.wait_for("tls_reloaded")
        assert (reloaded["cert"], reloaded["key"]) == tuple(map(str, pair))
        assert await peer_certificate(server.port) == der(leaf_b)
        assert await peer_certificate(server.port, sni="localhost") == der(leaf_b)
        assert fake.completed == 0, "the stream ended before the reload"
        rest = await resp.read()
    assert first + rest == b"".join(fake.sent)
    assert fake.completed == 1
    assert await healthz(server.https("/healthz"), client_context(ca_b)) == 200


async def test_bad_new_pair_keeps_the_old_certificate(
    start_tls: StartServe,
    ca: trustme.CA,
    leaf: trustme.LeafCert,
    pair: tuple[Path, Path],
) -> None:
    """A new key that does not match is refused and logged; the old pair serves on."""
    server = await start_tls({})
    cert, key = pair
    new = ca.issue_cert("127.0.0.1")
    stranger = ca.issue_cert("127.0.0.1")
    cert.write_bytes(new.cert_chain_pems[0].bytes())
    key.write_bytes(stranger.private_key_pem.bytes())
    server.proc.send_signal(signal.SIGHUP)
    failed = await server.wait_for("tls_reload_failed")
    assert (failed["level"], failed["error"]) == (
        "error",
        f"tls.cert/tls.key: cannot load {cert} with {key}: "
        "the private key does not match the certificate",
    )
    assert await peer_certificate(server.port) == der(leaf)
    assert await healthz(server.https("/healthz"), client_context(ca)) == 200
    key.write_bytes(new.private_key_pem.bytes())
    server.proc.send_signal(signal.SIGHUP)
    await server.wait_for("tls_reloaded")
    assert await peer_certificate(server.port) == der(new)


async def test_symlink_swap_is_noticed_without_a_signal(
    start_tls: StartServe, leaf: trustme.LeafCert, tmp_path: Path
) -> None:
    """Swapping a Kubernetes-style ..data symlink reloads the pair by polling."""
    secret = tmp_path / "secret"
    write_pair(leaf, secret / "..v1")
    (secret / "..data").symlink_to("..v1")
    for name in ("tls.crt", "tls.key"):
        (secret / name).symlink_to(f"..data/{name}")
    server = await start_tls(
        {
            "tls.cert": str(secret / "tls.crt"),
            "tls.key": str(secret / "tls.key"),
            "tls.reload_interval": "100ms",
        }
    )
    new = trustme.CA().issue_cert("127.0.0.1")
    write_pair(new, secret / "..v2")
    (secret / "..next").symlink_to("..v2")
    (secret / "..next").replace(secret / "..data")
    await server.wait_for("tls_reloaded")
    assert await peer_certificate(server.port) == der(new)


async def test_redirect_listener_sends_clients_to_https(
    start_tls: StartServe, fake: FakeOllama
) -> None:
    """The plain listener answers 308 to HTTPS, echoes no key and forwards nothing."""
    server = await start_tls({"tls.redirect_listen": "127.0.0.1:0"})
    (redirect,) = server.started["redirect"]
    token = first_token(server)
    malformed = (
        f"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token}\x00\r\n\r\n"
    )
    reply = await send_raw(int(redirect.rsplit(":", 1)[1]), malformed.encode())
    assert reply.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert reply.endswith(b'\r\n\r\n{"error":"bad request"}')
    assert token.encode() not in reply
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://{redirect}/api/chat?stream=true",
            json=GENERATE,
            headers=server.bearer,
            allow_redirects=False,
        ) as resp,
    ):
        assert resp.status == HTTPStatus.PERMANENT_REDIRECT
        assert resp.headers["Location"] == (
            f"https://127.0.0.1:{server.port}/api/chat?stream=true"
        )
    assert fake.received == []


async def test_healthcheck_probes_https(
    start_tls: StartServe, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """With tls.cert set, healthcheck probes /healthz over HTTPS on loopback."""
    server = await start_tls({})
    monkeypatch.setenv("AUTHPROXY_LISTEN_PORT", str(server.port))
    args = ["healthcheck", "--config", str(server.config_path)]
    assert await asyncio.to_thread(main, args) == 0
    assert capsys.readouterr().out == (
        f"healthy: https://127.0.0.1:{server.port}/healthz\n"
    )
