"""server.tls: the server context, its reloader, HTTPS and mTLS in process."""

from __future__ import annotations

import ssl
import warnings
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from pytest_aiohttp import AiohttpServer

from authproxy.config.model import TLSConfig
from authproxy.errors import ConfigError
from authproxy.server.tls import (
    INTERMEDIATE_CIPHERS,
    CertificateReloader,
    create_server_context,
    load_server_context,
)
from tests.support.audit import read_audit, wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.logs import LogCapture
from tests.support.payloads import GENERATE
from tests.support.tls import (
    client_context,
    der,
    handshake,
    peer_certificate,
)


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
