"""HTTPS on the public listener: the server ``SSLContext``, hot reload, redirects.

A certificate is reloaded without a restart and without touching open
connections: every reload builds a complete new context off the event loop, and
each new connection is made from the newest good context (``ServingContext``).
A bad new pair never leaves its throw-away context, so the old one stays in
service.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from pathlib import Path
from typing import Final

import structlog
from aiohttp import hdrs, web

from authproxy.config.model import TLSConfig
from authproxy.errors import ConfigError
from authproxy.files import file_signature
from authproxy.responses import Handler, json_error

log = structlog.stdlib.get_logger(__name__)

MIN_VERSIONS: Final = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# Mozilla's "intermediate" profile for TLS 1.2: forward-secret AEAD suites only.
# TLS 1.3 suites are all modern and are configured by OpenSSL itself.
INTERMEDIATE_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
_SSL_LOCATION_RE: Final = re.compile(r"\s*\(_ssl\.c:\d+\)$")
_HOST_RE: Final = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?")

Signature = tuple[tuple[int, int, int, int] | None, ...]


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for the
    # passphrase of an encrypted key and hang the server; an empty one fails.
    return b""


def create_server_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    *,
    client_ca: str | os.PathLike[str] | None = None,
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """Build a server context: TLS 1.2+, modern ciphers, optional client certs.

    Args:
        cert: PEM certificate chain, leaf first.
        key: PEM private key of the leaf (not encrypted).
        client_ca: PEM bundle of CAs whose client certificates are accepted;
            with it, every client must present one.
        min_version: the oldest protocol version accepted.

    Raises:
        OSError: a file cannot be read (``ssl.SSLError``: it is not valid PEM,
            or the key does not match the certificate).

    Returns:
        A new context with the pair loaded.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = min_version
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.options |= (
        ssl.OP_NO_COMPRESSION  # CRIME
        | ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_NO_RENEGOTIATION  # client-initiated renegotiation is a DoS lever
    )
    ctx.load_cert_chain(cert, key, password=_no_password)
    if client_ca is not None:
        _require_client_certificates(ctx, client_ca)
    return ctx


def _require_client_certificates(
    ctx: ssl.SSLContext, client_ca: str | os.PathLike[str]
) -> None:
    # CERT_REQUIRED: a client without a certificate fails the handshake, so an
    # unauthenticated client never reaches HTTP at all.
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=client_ca)


def _reason(err: OSError) -> str:
    """Describe a load error by OpenSSL's reason only, never the file's content."""
    if isinstance(err, ssl.SSLError):
        if err.reason == "KEY_VALUES_MISMATCH":
            return "the private key does not match the certificate"
        return _SSL_LOCATION_RE.sub("", str(err))
    return err.strerror or type(err).__name__


def load_server_context(tls: TLSConfig) -> ssl.SSLContext:
    """Build the server context for ``tls``, naming the setting that is wrong.

    Raises:
        ConfigError: a file cannot be read, is not PEM, or the key does not
            match the certificate. The message never quotes a file.

    Returns:
        The new context.
    """
    if tls.cert is None or tls.key is None:
        raise ConfigError("tls.cert: required to serve HTTPS")
    # Opening each file first names the one that is missing or unreadable;
    # load_cert_chain's own OSError does not say which of the two it was.
    for name, path in (
        ("cert", tls.cert),
        ("key", tls.key),
        ("client_ca", tls.client_ca),
    ):
        if path is not None:
            try:
                Path(path).open("rb").close()
            except OSError as err:
                raise ConfigError(
                    f"tls.{name}: cannot read {path}: {_reason(err)}"
                ) from None
    try:
        ctx = create_server_context(
            tls.cert, tls.key, min_version=MIN_VERSIONS[tls.min_version]
        )
    except OSError as err:
        raise ConfigError(
            f"tls.cert/tls.key: cannot load {tls.cert} with {tls.key}: {_reason(err)}"
        ) from None
    if tls.client_ca is not None:
        try:
            _require_client_certificates(ctx, tls.client_ca)
        except OSError as err:
            raise ConfigError(
                f"tls.client_ca: cannot load {tls.client_ca}: {_reason(err)}"
            ) from None
    return ctx


class ServingContext(ssl.SSLContext):
    """The listening context: it makes each new connection from ``current``.

    asyncio and uvloop call ``wrap_bio`` once per accepted connection, so the
    whole handshake runs in the newest context, with that context's session
    cache and ticket keys. Switching contexts later, in an SNI callback, would
    not do: OpenSSL keeps looking sessions up in the cache, and decrypting
    tickets with the keys, of the context the connection was made from, so a
    client could resume a session from before a reload with a certificate the
    new ``tls.client_ca`` no longer trusts. A reload therefore ends resumption
    of every earlier session; clients make one full handshake.

    Its own settings are never used. It holds no certificate, so a socket
    wrapped with it directly (``wrap_socket``) fails its handshake.
    """

    current: ssl.SSLContext

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """Wrap a connection's BIOs with the current context."""
        return self.current.wrap_bio(
            incoming, outgoing, server_side, server_hostname, session
        )


class CertificateReloader:
    """Own the listening context and put new certificate pairs in service."""

    def __init__(self, tls: TLSConfig) -> None:
        """Load the configured pair synchronously, before the server starts.

        Raises:
            ConfigError: the files cannot be loaded (see ``load_server_context``).
        """
        self.reloads = 0
        self.failures = 0
        self._tls = tls
        self._lock = asyncio.Lock()
        self._seen = self._signature()
        self.context: Final = ServingContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.current = load_server_context(tls)

    def _signature(self) -> Signature:
        return tuple(
            file_signature(p)
            for p in (self._tls.cert, self._tls.key, self._tls.client_ca)
        )

    async def reload(self, *, force: bool = False) -> bool:
        """Load the files again if they changed (or always, with ``force``).

        Returns:
            Whether a new pair was put in service.
        """
        async with self._lock:
            signature = self._signature()
            if not force and signature == self._seen:
                return False
            # Taken before reading: a file still being written changes again,
            # so the next poll retries.
            self._seen = signature
            loop = asyncio.get_running_loop()
            try:
                ctx = await loop.run_in_executor(None, load_server_context, self._tls)
            except ConfigError as err:
                self.failures += 1
                log.error("tls_reload_failed", cert=self._tls.cert, error=str(err))
                return False
            self.context.current = ctx
            self.reloads += 1
            log.info("tls_reloaded", cert=self._tls.cert, key=self._tls.key)
            return True

    async def run(self) -> None:
        """Poll the files forever; cancel the task to stop."""
        while True:
            await asyncio.sleep(self._tls.reload_interval)
            await self.reload()


def create_redirect_app(https_port: int) -> web.Application:
    """Build the plain-HTTP app that answers every request with a 308 to HTTPS.

    Warning:
        Nothing here looks at credentials or talks to the upstream. A client
        that sent a key to this port has already sent it in clear text.
    """
    port = "" if https_port == 443 else f":{https_port}"

    @web.middleware
    async def redirect_middleware(
        request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        # Every request is answered here, before routing: there is nothing to
        # route to, and the router would answer "*", a CONNECT target or a
        # path with an encoded newline with a plain-text 404.
        # The Host header is client-chosen: accept only a plain host name or IP
        # literal, so the Location cannot point at a userinfo or path trick.
        match = _HOST_RE.fullmatch(request.headers.get(hdrs.HOST, ""))
        if match is None:
            return json_error(400, "missing or invalid Host header")
        # The path and query as sent, still percent-encoded: the parser has
        # refused raw control characters and non-ASCII bytes in the target,
        # so nothing in it can end the Location header. An absolute-form
        # target contributes only its path; a fragment is dropped.
        target = request.rel_url.raw_path_qs
        if not target.startswith("/"):
            return json_error(400, "invalid request target")
        location = f"https://{match.group(1)}{port}{target}"
        return web.Response(status=308, headers={hdrs.LOCATION: location})

    async def hide_server(request: web.Request, response: web.StreamResponse) -> None:
        # Same reason as the proxy app: no versions for scanners.
        response.headers.popall(hdrs.SERVER, None)

    app = web.Application(middlewares=[redirect_middleware])
    app.on_response_prepare.append(hide_server)
    return app
