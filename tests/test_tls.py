"""TLS front door: contexts, HTTPS end to end, hot reload, mTLS, redirects, health."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from pytest_aiohttp import AiohttpServer

from authproxy.cli.main import build_parser, main, overrides_from
from authproxy.config.load import load_config
from authproxy.config.model import TLSConfig
from authproxy.errors import ConfigError
from authproxy.server.httpserver import server_kwargs
from authproxy.server.tls import (
    INTERMEDIATE_CIPHERS,
    CertificateReloader,
    create_server_context,
    load_server_context,
)
from authproxy.web.app import create_app
from tests.conftest import LogCapture, Secrets, nested, read_audit, wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.serving import ServeProcess, first_token
from tests.test_hostile import raw

GENERATE: dict[str, Any] = {"model": "llama3.2", "prompt": "x"}


def write_pair(leaf: trustme.LeafCert, folder: Path) -> tuple[Path, Path]:
    """Write a leaf's chain and key as tls.crt / tls.key, in place."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "tls.crt", folder / "tls.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return cert, key


def der(leaf: trustme.LeafCert) -> bytes:
    """Return the leaf certificate in DER, as a TLS peer presents it."""
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def client_context(
    ca: trustme.CA, client: trustme.LeafCert | None = None
) -> ssl.SSLContext:
    """Return a client context trusting only ``ca``, optionally with a client cert."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client is not None:
        client.configure_cert(ctx)
    return ctx


async def handshake(
    port: int | None, ctx: ssl.SSLContext | None = None, sni: str | None = None
) -> ssl.SSLObject:
    """Complete a new TLS handshake with 127.0.0.1:port and return its SSL object."""
    if ctx is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname=sni
    )
    ssl_object: ssl.SSLObject = writer.get_extra_info("ssl_object")
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()
    return ssl_object


async def peer_certificate(port: int | None, sni: str | None = None) -> bytes:
    """Return the certificate (DER) a new connection to ``port`` is shown."""
    certificate = (await handshake(port, sni=sni)).getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


async def healthz(url: str, ctx: ssl.SSLContext) -> int:
    """GET ``url`` on a new connection made with ``ctx``; return the status."""
    connector = aiohttp.TCPConnector(ssl=ctx)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url) as resp,
    ):
        return resp.status


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def pair(leaf: trustme.LeafCert, tmp_path: Path) -> tuple[Path, Path]:
    return write_pair(leaf, tmp_path / "tls")


@pytest.fixture
def tls_overrides(overrides: dict[str, Any], pair: tuple[Path, Path]) -> dict[str, Any]:
    return {**overrides, "tls.cert": str(pair[0]), "tls.key": str(pair[1])}


@pytest.fixture
def client_cas(tmp_path: Path) -> tuple[trustme.CA, Path]:
    """A CA for client certificates, written as the tls.client_ca bundle."""
    clients = trustme.CA()
    path = tmp_path / "clients.pem"
    path.write_bytes(clients.cert_pem.bytes())
    return clients, path


@pytest.fixture
def start_https(
    aiohttp_server: AiohttpServer, tls_overrides: dict[str, Any], key: Any
) -> Callable[..., Awaitable[Any]]:
    """Start the real proxy app in-process behind the real TLS context."""

    async def start(extra: dict[str, Any] | None = None) -> Any:
        cfg = load_config(None, {**tls_overrides, **(extra or {})})
        reloader = CertificateReloader(cfg.tls)
        return await aiohttp_server(
            create_app(cfg), ssl=reloader.context, **server_kwargs(cfg)
        )

    return start


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


class TestConfig:
    def test_defaults_keep_tls_off(self) -> None:
        """Without settings TLS is off, TLS 1.2 is the floor and nothing redirects."""
        assert load_config().tls == TLSConfig(
            cert=None,
            key=None,
            client_ca=None,
            min_version="TLSv1.2",
            reload_interval=1.0,
            redirect_listen="",
        )

    def test_env_and_flags(self) -> None:
        """AUTHPROXY_TLS_* variables and --tls-cert/--tls-key set tls.cert/tls.key."""
        env = {
            "AUTHPROXY_TLS_CERT": "/data/tls/tls.crt",
            "AUTHPROXY_TLS_KEY": "/data/tls/tls.key",
            "AUTHPROXY_TLS_CLIENT_CA": "",
        }
        tls = load_config(None, {}, env).tls
        assert (tls.cert, tls.key, tls.client_ca) == (
            "/data/tls/tls.crt",
            "/data/tls/tls.key",
            None,
        )
        args = build_parser().parse_args(
            ["serve", "--tls-cert", "c.pem", "--tls-key", "k.pem"]
        )
        assert overrides_from(args) == {"tls.cert": "c.pem", "tls.key": "k.pem"}

    @pytest.mark.parametrize(
        ("dotted", "message"),
        [
            ({"tls.cert": "c.pem"}, "tls.key: required when tls.cert is set"),
            ({"tls.key": "k.pem"}, "tls.cert: required when tls.key is set"),
            (
                {"tls.client_ca": "ca.pem"},
                "tls.cert: required when tls.client_ca is set",
            ),
            (
                {"tls.redirect_listen": "0.0.0.0:80"},
                "tls.cert: required when tls.redirect_listen is set",
            ),
            (
                {"tls.min_version": "TLSv1.1"},
                "tls.min_version: expected TLSv1.2|TLSv1.3, got 'TLSv1.1'",
            ),
            (
                {"tls.cert": 5, "tls.key": "k.pem"},
                "tls.cert: expected a file path, got 5",
            ),
            (
                {"tls.redirect_listen": "80"},
                "tls.redirect_listen: expected HOST:PORT such as 127.0.0.1:11436, "
                "got '80'",
            ),
            ({"tls.reload_interval": 0}, "tls.reload_interval: expected > 0, got 0"),
        ],
        ids=[
            "cert-without-key",
            "key-without-cert",
            "client-ca-without-cert",
            "redirect-without-cert",
            "tls-1.1",
            "cert-not-a-path",
            "redirect-not-host-port",
            "zero-interval",
        ],
    )
    def test_errors_name_the_key(self, dotted: dict[str, Any], message: str) -> None:
        """Each invalid TLS setting stops loading with a message naming its key."""
        with pytest.raises(ConfigError) as err:
            load_config(None, dotted)
        assert str(err.value) == message


class TestContext:
    def test_settings(self, pair: tuple[Path, Path], client_cas: Any) -> None:
        """The context allows TLS 1.2+, AEAD ECDHE suites, no compression."""
        cert, key = pair
        ctx = create_server_context(cert, key)
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.verify_mode == ssl.CERT_NONE
        assert ctx.options & ssl.OP_NO_COMPRESSION == ssl.OP_NO_COMPRESSION
        assert (
            ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
            == ssl.OP_CIPHER_SERVER_PREFERENCE
        )
        tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
        assert sorted(tls12) == sorted(INTERMEDIATE_CIPHERS.split(":"))
        strict = create_server_context(
            cert, key, client_ca=client_cas[1], min_version=ssl.TLSVersion.TLSv1_3
        )
        assert strict.minimum_version == ssl.TLSVersion.TLSv1_3
        assert strict.verify_mode == ssl.CERT_REQUIRED

    @pytest.mark.parametrize(
        "case",
        [
            "missing-cert",
            "missing-key",
            "junk-cert",
            "mismatched-key",
            "encrypted-key",
            "junk-client-ca",
        ],
    )
    def test_load_errors_name_the_setting(
        self, case: str, ca: trustme.CA, pair: tuple[Path, Path], tmp_path: Path
    ) -> None:
        """Unusable files give a ConfigError naming the key, never quoting a file."""
        cert, key = pair
        client_ca = None
        pair_error = f"tls.cert/tls.key: cannot load {cert} with {key}"
        if case == "missing-cert":
            cert.unlink()
            expected = f"tls.cert: cannot read {cert}: No such file or directory"
        elif case == "missing-key":
            key.unlink()
            expected = f"tls.key: cannot read {key}: No such file or directory"
        elif case == "junk-cert":
            cert.write_text("not a certificate\n")
            expected = f"{pair_error}: [SSL] PEM lib"
        elif case == "mismatched-key":
            key.write_bytes(ca.issue_cert("127.0.0.1").private_key_pem.bytes())
            expected = f"{pair_error}: the private key does not match the certificate"
        elif case == "encrypted-key":
            private = serialization.load_pem_private_key(key.read_bytes(), None)
            key.write_bytes(
                private.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.BestAvailableEncryption(b"passphrase"),
                )
            )
            expected = f"{pair_error}: [SSL] PEM lib"
        else:
            client_ca = tmp_path / "ca.pem"
            client_ca.write_text("not a CA bundle\n")
            expected = (
                f"tls.client_ca: cannot load {client_ca}: "
                "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found"
            )
        tls = TLSConfig(
            cert=str(cert),
            key=str(key),
            client_ca=str(client_ca) if client_ca else None,
        )
        with pytest.raises(ConfigError) as err:
            load_server_context(tls)
        assert str(err.value) == expected

    def test_nothing_to_load_without_a_certificate(self) -> None:
        """Asking for a server context without tls.cert names the missing key."""
        with pytest.raises(ConfigError) as err:
            load_server_context(TLSConfig())
        assert str(err.value) == "tls.cert: required to serve HTTPS"

    async def test_reloader_reloads_only_changes(
        self, pair: tuple[Path, Path], leaf: trustme.LeafCert, log_capture: LogCapture
    ) -> None:
        """Unchanged files stay; a missing key is reported once, then healed."""
        cert, key = pair
        reloader = CertificateReloader(TLSConfig(cert=str(cert), key=str(key)))
        assert await reloader.reload() is False
        key.unlink()
        assert await reloader.reload() is False
        assert await reloader.reload() is False
        assert (reloader.failures, reloader.reloads) == (1, 0)
        key.write_bytes(leaf.private_key_pem.bytes())
        assert await reloader.reload() is True
        assert (reloader.failures, reloader.reloads) == (1, 1)
        (failed,) = log_capture.events("tls_reload_failed")
        assert failed["error"] == (
            f"tls.key: cannot read {key}: No such file or directory"
        )
        (reloaded,) = log_capture.events("tls_reloaded")
        assert (reloaded["cert"], reloaded["key"]) == (str(cert), str(key))


async def test_https_end_to_end(
    start_https: Any,
    ca: trustme.CA,
    leaf: trustme.LeafCert,
    bearer: dict[str, str],
    fake: FakeOllama,
    audit_path: Path,
) -> None:
    """Over HTTPS a stream is relayed byte for byte and upstream hears proto=https."""
    server = await start_https()
    assert server.scheme == "https"
    connector = aiohttp.TCPConnector(ssl=client_context(ca))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(
            server.make_url("/api/generate"), json=GENERATE, headers=bearer
        ) as resp,
    ):
        assert resp.status == HTTPStatus.OK
        body = await resp.read()
    assert body == b"".join(fake.sent)
    assert fake.last.headers["X-Forwarded-Proto"] == "https"
    (record,) = await wait_audit(audit_path, 1)
    assert (record["status"], record["outcome"]) == (200, "completed")
    assert await peer_certificate(server.port) == der(leaf)
    assert (await handshake(server.port)).version() == "TLSv1.3"


async def test_tls_1_1_is_refused(
    aiohttp_server: AiohttpServer, ca: trustme.CA, pair: tuple[Path, Path]
) -> None:
    """A TLS 1.1 client is refused by our context, though it can speak TLS 1.1."""
    cert, key = pair
    ours = await aiohttp_server(web.Application(), ssl=create_server_context(cert, key))
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; using them is the point of this test.
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(old)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        # OpenSSL 3 allows TLS < 1.2 only at security level 0, on either side.
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        lax = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        lax.minimum_version = ssl.TLSVersion.TLSv1
        lax.set_ciphers("DEFAULT:@SECLEVEL=0")
        lax.load_cert_chain(cert, key)
    control = await aiohttp_server(web.Application(), ssl=lax)
    # The control proves the client really offers TLS 1.1, so the refusal
    # below comes from our server. asyncio aborts the failed handshake before
    # its protocol_version alert is flushed, so the client sees a reset.
    assert (await handshake(control.port, old)).version() == "TLSv1.1"
    with pytest.raises(ConnectionResetError):
        await handshake(ours.port, old)


async def test_mtls_refuses_clients_without_an_accepted_certificate(
    start_https: Any,
    ca: trustme.CA,
    client_cas: tuple[trustme.CA, Path],
    bearer: dict[str, str],
    fake: FakeOllama,
    audit_path: Path,
) -> None:
    """With tls.client_ca, no certificate or a foreign one never reaches HTTP."""
    server = await start_https({"tls.client_ca": str(client_cas[1])})
    for client in (None, trustme.CA().issue_cert("mallory@example.com")):
        connector = aiohttp.TCPConnector(ssl=client_context(ca, client))
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await session.get(server.make_url("/api/tags"), headers=bearer)
    assert fake.received == []
    assert read_audit(audit_path) == []


async def test_mtls_client_certificate_still_needs_a_key(
    start_https: Any,
    ca: trustme.CA,
    client_cas: tuple[trustme.CA, Path],
    bearer: dict[str, str],
    fake: FakeOllama,
) -> None:
    """A certificate from tls.client_ca passes TLS; the API key is still checked."""
    server = await start_https({"tls.client_ca": str(client_cas[1])})
    client = client_cas[0].issue_cert("alice@example.com")
    connector = aiohttp.TCPConnector(ssl=client_context(ca, client))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(server.make_url("/api/tags")) as resp:
            assert resp.status == HTTPStatus.UNAUTHORIZED
        async with session.get(server.make_url("/api/tags"), headers=bearer) as resp:
            assert resp.status == HTTPStatus.OK
            assert await resp.read() == fake.sent[-1]
    assert [r.path_qs for r in fake.received] == ["/api/tags"]


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
    reply = await raw(int(redirect.rsplit(":", 1)[1]), malformed.encode())
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


async def test_healthcheck_with_mtls_checks_the_handshake(
    start_https: Any,
    client_cas: tuple[trustme.CA, Path],
    tls_overrides: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With tls.client_ca, healthcheck has no client certificate: it checks TLS."""
    server = await start_https({"tls.client_ca": str(client_cas[1])})
    dotted = {
        **tls_overrides,
        "tls.client_ca": str(client_cas[1]),
        "listen.port": server.port,
    }
    path = tmp_path / "health.yaml"
    path.write_text(yaml.safe_dump(nested(dotted)))
    assert await asyncio.to_thread(main, ["healthcheck", "--config", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"healthy: https://127.0.0.1:{server.port}/healthz "
        "(TLS handshake only: client certificates required)\n"
    )


async def test_healthcheck_https_against_plain_http_fails(
    proxy: Any, tls_overrides: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    """healthcheck exits 1 when the configured TLS listener does not speak TLS."""
    path = tmp_path / "health.yaml"
    path.write_text(
        yaml.safe_dump(nested({**tls_overrides, "listen.port": proxy.port}))
    )
    args = ["healthcheck", "--config", str(path), "--timeout", "2"]
    assert await asyncio.to_thread(main, args) == 1
    assert capsys.readouterr().err.startswith(
        f"unhealthy: https://127.0.0.1:{proxy.port}/healthz: "
    )


async def test_serve_exits_2_on_a_mismatched_pair(
    ca: trustme.CA,
    pair: tuple[Path, Path],
    config_file: Path,
    keys_path: Path,
) -> None:
    """serve refuses a key that does not match: exit 2, one line, no key store made."""
    cert, key = pair
    key.write_bytes(ca.issue_cert("127.0.0.1").private_key_pem.bytes())
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2
    assert err.decode() == (
        f"authproxy: tls.cert/tls.key: cannot load {cert} with {key}: "
        "the private key does not match the certificate\n"
    )
    assert out == b""
    assert not keys_path.exists()
