"""TLS in tests: certificate files, client contexts, handshakes with the server."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import trustme

from tests.support.rawhttp import connect


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
    async with connect(port, tls=ctx, sni=sni) as (_, writer):
        ssl_object: ssl.SSLObject = writer.get_extra_info("ssl_object")
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
