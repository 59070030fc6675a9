"""The upstream: its settings as plain data, and how a target is joined to it."""

from __future__ import annotations

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
from authproxy.proxy.headers import TrustedProxies

_DOT_SEGMENT: Final = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")


@dataclass(frozen=True, slots=True)
class Upstream:
    """Everything the handler needs to know about the upstream, computed once."""

    origin: URL
    host_header: str
    trusted_proxies: TrustedProxies
    max_body_size: int
    response_timeout: float
    idle_timeout: float
    body_idle_timeout: float = 0.0
    include_usage: bool = False
    default_output: int = 0  # tokens reserved for a request that sets no cap

    client_timeout: aiohttp.ClientTimeout = aiohttp.ClientTimeout()


@dataclass(frozen=True, slots=True)
class Forwarding:
    """The upstream, the client session and the open streams, for the handler."""

    upstream: Upstream
    session: aiohttp.ClientSession
    stopping: Callable[[], bool]
    streams: weakref.WeakSet[web.StreamResponse] = field(
        default_factory=weakref.WeakSet
    )


def upstream_url(origin: URL, raw_path: str) -> URL | None:
    """Join the configured origin and the raw request target.

    Returns:
        The upstream URL, or ``None`` if the target is not origin-form, has
        dot segments (``/v1/models/../../api/pull``, also percent-encoded:
        another server on the way could resolve them to another route than
        the one the policy judged), or would leave the configured origin.
    """
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        return None
    path = raw_path.partition("?")[0]
    if _DOT_SEGMENT.search(unquote(path)):
        return None
    try:
        url = URL(str(origin) + raw_path, encoded=True)
    except ValueError:
        return None
    if (url.scheme, url.host, url.port) != (origin.scheme, origin.host, origin.port):
        return None
    return url


def resolve_target(origin: URL, raw_path: str) -> URL:
    """Return the upstream URL of a request target.

    Raises:
        Denied: 400 for a target ``upstream_url`` refuses.
    """
    url = upstream_url(origin, raw_path)
    if url is None:
        raise Denied(400, "invalid_request_target", "invalid request target")
    return url
