"""mTLS and session resumption: a reloaded client-CA bundle also binds old sessions."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
import trustme
from pytest_aiohttp import AiohttpServer

from authproxy.config.load import load_config
from authproxy.server.httpserver import server_kwargs
from authproxy.server.tls import CertificateReloader
from authproxy.web.app import create_app
from tests.support.tls import write_pair

# How the client asks to resume: TLS 1.2 by ticket (RFC 5077) or by the
# server's session-id cache, and TLS 1.3 by ticket (a PSK).
MODES = ["TLSv1.2-ticket", "TLSv1.2-session-id", "TLSv1.3-ticket"]


@dataclass(frozen=True, slots=True)
class Visit:
    """One connection's outcome: the HTTP status (None: refused) and its session."""

    status: int | None
    session: ssl.SSLSession | None = None
    reused: bool = False


def client_context(
    server_ca: trustme.CA, client: trustme.LeafCert, mode: str
) -> ssl.SSLContext:
    """Return a client context for ``mode`` that shows ``client``'s certificate."""
    ctx = ssl.create_default_context()
    server_ca.configure_trust(ctx)
    client.configure_cert(ctx)
    version = ssl.TLSVersion[mode.split("-", maxsplit=1)[0].replace(".", "_")]
    ctx.minimum_version = ctx.maximum_version = version
    if mode == "TLSv1.2-session-id":
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def _visit(port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None) -> Visit:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            with ctx.wrap_socket(
                sock, server_hostname="127.0.0.1", session=session
            ) as tls:
                tls.sendall(
                    b"GET /healthz HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n"
                )
                reply = b"".join(iter(lambda: tls.recv(65536), b""))
                if not reply:
                    return Visit(None)
                # Read after the reply: a TLS 1.3 ticket arrives after the handshake.
                status = int(reply.split(b" ", 2)[1])
                return Visit(status, tls.session, bool(tls.session_reused))
        except (ssl.SSLError, ConnectionError):
            # The server refused the handshake (TLS 1.2) or closed right after
            # it (TLS 1.3, where the client's certificate is checked last).
            return Visit(None)


async def visit(
    port: int, ctx: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> Visit:
    """GET /healthz on a new connection, offering ``session`` for resumption."""
    # A blocking socket in a thread: asyncio's streams cannot offer a session.
    return await asyncio.to_thread(_visit, port, ctx, session)


@dataclass
class MTLSServer:
    """The proxy app behind the real TLS context, with its reloader and bundle."""

    port: int
    reloader: CertificateReloader
    bundle: Path

    async def trust(self, *cas: trustme.CA) -> None:
        """Rewrite the tls.client_ca bundle to ``cas`` and reload it now."""
        self.bundle.write_bytes(b"".join(ca.cert_pem.bytes() for ca in cas))
        assert await self.reloader.reload(force=True) is True


@pytest.fixture
def server_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_a() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_b() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def mtls(
    aiohttp_server: AiohttpServer,
    overrides: dict[str, Any],
    key: Any,
    server_ca: trustme.CA,
    ca_a: trustme.CA,
    tmp_path: Path,
) -> MTLSServer:
    """Serve the proxy app over HTTPS, accepting client certificates from CA A."""
    cert, tls_key = write_pair(server_ca.issue_cert("127.0.0.1"), tmp_path / "tls")
    bundle = tmp_path / "clients.pem"
    bundle.write_bytes(ca_a.cert_pem.bytes())
    tls = {"tls.cert": str(cert), "tls.key": str(tls_key), "tls.client_ca": str(bundle)}
    cfg = load_config(None, {**overrides, **tls})
    reloader = CertificateReloader(cfg.tls)
    server = await aiohttp_server(
        create_app(cfg), ssl=reloader.context, **server_kwargs(cfg)
    )
    assert server.port is not None
    return MTLSServer(server.port, reloader, bundle)


@pytest.mark.parametrize("mode", MODES)
async def test_no_resumption_past_a_bundle_that_dropped_the_ca(
    mtls: MTLSServer,
    server_ca: trustme.CA,
    ca_a: trustme.CA,
    ca_b: trustme.CA,
    mode: str,
) -> None:
    """A session from before the reload cannot resume once its CA is untrusted."""
    alice = client_context(server_ca, ca_a.issue_cert("alice@example.com"), mode)
    first = await visit(mtls.port, alice)
    assert (first.status, first.reused) == (HTTPStatus.OK, False)
    again = await visit(mtls.port, alice, first.session)
    assert (again.status, again.reused) == (HTTPStatus.OK, True), "no resumption"
    await mtls.trust(ca_b)
    assert await visit(mtls.port, alice, again.session) == Visit(None)
    assert await visit(mtls.port, alice) == Visit(None)
    bob = client_context(server_ca, ca_b.issue_cert("bob@example.com"), mode)
    assert (await visit(mtls.port, bob)).status == HTTPStatus.OK


@pytest.mark.parametrize("mode", MODES)
async def test_still_trusted_client_keeps_working_after_a_reload(
    mtls: MTLSServer,
    server_ca: trustme.CA,
    ca_a: trustme.CA,
    ca_b: trustme.CA,
    mode: str,
) -> None:
    """A client the new bundle still trusts gets a full handshake, then resumes."""
    alice = client_context(server_ca, ca_a.issue_cert("alice@example.com"), mode)
    first = await visit(mtls.port, alice)
    assert first.status == HTTPStatus.OK
    await mtls.trust(ca_a, ca_b)
    full = await visit(mtls.port, alice, first.session)
    assert (full.status, full.reused) == (HTTPStatus.OK, False)
    resumed = await visit(mtls.port, alice, full.session)
    assert (resumed.status, resumed.reused) == (HTTPStatus.OK, True)
