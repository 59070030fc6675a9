"""The upstream: its settings as plain data, how a target is joined to it, failures.

The upstream URL may carry a base path (Ollama served under a gateway route,
``http://olla:40114/olla/ollama``): every target is joined beneath it, and a
target that could leave it is refused.
"""

from __future__ import annotations

import errno
import os
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from yarl import URL

from authproxy.errors import Denied
from authproxy.proxy.h1 import LeanFailure
from authproxy.proxy.headers import TrustedProxies
from authproxy.proxy.lean import LeanClient

# A backslash counts as a separator too: some servers on the way treat it as one.
_DOT_SEGMENT: Final = re.compile(r"(?:^|[/\\])\.{1,2}(?:[/\\]|$)")
# Joining a target costs more than the rest of the check (yarl), and URLs are
# immutable: the last few thousand targets, refused ones (None) included.
_TARGETS_KEPT: Final = 4096
_TARGETS: dict[tuple[URL, str], URL | None] = {}


@dataclass(frozen=True, slots=True)
class Upstream:
    """Everything the handler needs to know about the upstream, computed once.

    ``origin`` is the upstream's base URL: its origin, plus the base path
    with a trailing slash when it has one (what ``/readyz`` probes).
    """

    origin: URL
    host_header: str
    trusted_proxies: TrustedProxies
    max_body_size: int
    response_timeout: float
    idle_timeout: float
    body_idle_timeout: float = 0.0
    include_usage: bool = False
    default_output: int = 0  # tokens reserved for a request that sets no cap
    # With cors.origins the proxy answers CORS: Origin is not sent upstream.
    strip_origin: bool = False

    client_timeout: aiohttp.ClientTimeout = aiohttp.ClientTimeout()


@dataclass(frozen=True, slots=True)
class Forwarding:
    """The upstream, its clients and the open streams, for the handler.

    With ``upstream.client: lean`` requests go through ``client``; the aiohttp
    ``session`` stays for ``/readyz`` (and forwards when ``client`` is None).
    """

    upstream: Upstream
    session: aiohttp.ClientSession
    stopping: Callable[[], bool]
    streams: weakref.WeakSet[web.StreamResponse] = field(
        default_factory=weakref.WeakSet
    )
    client: LeanClient | None = None


def upstream_url(origin: URL, raw_path: str) -> URL | None:
    """Join the configured base URL and the raw request target.

    Returns:
        The upstream URL, or ``None`` if the target is not origin-form, has
        dot segments (``/v1/models/../../api/pull``, also percent-encoded:
        another server on the way could resolve them to another route than
        the one the policy judged), or would leave the configured origin or
        its base path.
    """
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        return None
    path = raw_path.partition("?")[0]
    if _DOT_SEGMENT.search(unquote(path)):
        return None
    base = origin.raw_path.rstrip("/")
    try:
        url = URL(str(origin.origin()) + base + raw_path, encoded=True)
    except ValueError:
        return None
    if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
        return None
    if not url.raw_path.startswith(base + "/"):
        return None
    return url


def resolve_target(origin: URL, raw_path: str) -> URL:
    """Return the upstream URL of a request target (remembered: clients repeat them).

    Raises:
        Denied: 400 for a target ``upstream_url`` refuses.
    """
    key = (origin, raw_path)
    try:
        url = _TARGETS[key]
    except KeyError:
        url = upstream_url(origin, raw_path)
        if len(_TARGETS) >= _TARGETS_KEPT:
            _TARGETS.clear()  # a client inventing targets only resets the memo
        _TARGETS[key] = url
    if url is None:
        raise Denied(400, "invalid_request_target", "invalid request target")
    return url


# In the order they are tried: a connect timeout is a timeout too.
_FAILURES: Final[
    tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...]
] = (
    (aiohttp.ConnectionTimeoutError, "connect timeout"),
    (TimeoutError, "read timeout"),
    (
        (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError),
        "upstream closed connection",
    ),
    (ConnectionResetError, "connection reset by upstream"),
    (aiohttp.ClientResponseError, "invalid response from upstream"),
)


def failure_reason(err: BaseException) -> str:
    """Say why the upstream failed, in nginx's words, never as a Python type.

    ``connect refused``, ``connect timeout``, ``read timeout``, ``DNS lookup
    failed (<host>)``, ``upstream closed connection``, a TLS error; the host
    comes from the configuration, never from the request.
    """
    if isinstance(err, LeanFailure):
        return err.reason  # the lean client names its failures in these words
    if isinstance(err, aiohttp.ClientConnectorError):
        return _connect_reason(err)
    for kind, words in _FAILURES:
        if isinstance(err, kind):
            return words
    if isinstance(err, OSError):
        if err.errno == errno.ECONNRESET:
            return "connection reset by upstream"
        return f"connection error ({_strerror(err)})"
    return "connection error"


def _connect_reason(err: aiohttp.ClientConnectorError) -> str:
    """Say why a connection could not be made (DNS, refused, TLS, routing)."""
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed ({err.host})"
    if isinstance(err, aiohttp.ClientConnectorCertificateError):
        cert = err.certificate_error
        detail = getattr(cert, "verify_message", None) or getattr(cert, "reason", None)
        return f"TLS certificate verify failed ({detail or 'untrusted'})"
    if isinstance(err, aiohttp.ClientSSLError):
        detail = getattr(err.os_error, "reason", None)
        return f"TLS handshake failed ({detail or 'protocol error'})"
    if err.os_error.errno == errno.ECONNREFUSED:
        return "connect refused"
    return f"connect failed ({_strerror(err.os_error)})"


def _strerror(err: OSError) -> str:
    """Return the OS's words for ``err`` in lower case (``no route to host``)."""
    if err.errno is not None:
        return os.strerror(err.errno).lower()
    return "unknown"


def public_url(url: URL) -> str:
    """Return an upstream URL as logs may show it: no credentials, no query."""
    return str(url.with_user(None).with_password(None).with_query(None))
