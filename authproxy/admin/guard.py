"""The admin listener's guard: a Host allow-list, same-origin and JSON-only writes.

Browsers are the threat here, not API clients. The admin API takes ambient
credentials (browsers cache HTTP Basic), and a web page can reach a loopback
listener in two ways:

1. DNS rebinding: the page's own name is re-pointed at 127.0.0.1, so the
   browser treats the admin API as the page's origin. Its ``Host`` header still
   carries the page's name, though. Only loopback names and addresses, the
   ``admin.listen`` host and ``admin.allowed_hosts`` are served; any other
   host gets ``421`` (RFC 9110 §7.4, §15.5.20: not a host this server answers for).
2. Cross-site "simple" requests: ``text/plain``, form or multipart bodies,
   or no ``Content-Type`` at all, are sent without a CORS preflight. Every
   state-changing request must therefore say ``application/json``, even with an
   empty body, else ``415``. A JSON request needs a preflight, and this
   listener sends no CORS headers, so a browser never sends one cross-origin.
   The console under ``/admin/ui/`` (a sub-application) takes HTML forms
   instead; every one carries its CSRF token, and the checks below still apply.
   As a second line, a write the browser marks as cross-site or same-site
   (``Sec-Fetch-Site``), or whose ``Origin`` is not this listener, gets ``403``.

All checks read headers only and run before authentication, so a refused
request costs no argon2 work and learns nothing about credentials.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import hdrs, web
from yarl import URL

from authproxy.admin.auth import in_subapp
from authproxy.config.model import AdminConfig
from authproxy.errors import Denied
from authproxy.responses import Handler

log = structlog.stdlib.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Sec-Fetch-Site values of requests a page did not make across sites:
# "none" is a typed URL or a bookmark (W3C Fetch Metadata Request Headers).
_SAME_ORIGIN: Final = frozenset({"same-origin", "none"})
_NAME_RE: Final = re.compile(r"[a-z0-9_.-]+")
_PORT_RE: Final = re.compile(r":[0-9]*")


@dataclass(frozen=True, slots=True)
class HostAllowList:
    """The host names and addresses the admin listener answers to."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[Network, ...]

    @classmethod
    def from_config(cls, config: AdminConfig) -> HostAllowList:
        """Build the list: ``localhost``, loopback, ``admin.listen``, the setting.

        A wildcard listen address (``0.0.0.0``, ``::``) names no host, so it
        adds nothing: clients that use another name must be listed in
        ``admin.allowed_hosts``.
        """
        entries = list(config.allowed_hosts)
        listen_host = config.listen.rpartition(":")[0].strip("[]").lower()
        if listen_host and not _is_unspecified(listen_host):
            entries.append(listen_host)
        names, suffixes, networks = {"localhost"}, [], []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if entry.startswith("*."):
                    suffixes.append(entry[1:])
                else:
                    names.add(entry.rstrip("."))
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def allows(self, host: str) -> bool:
        """Tell whether ``host`` (from ``request_host``) may be served."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names or host.endswith(self.suffixes)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        # Any 127/8 address and ::1: nothing but this machine can use them.
        return address.is_loopback or any(address in n for n in self.networks)


ALLOWED_HOSTS_KEY: Final = web.AppKey("admin_allowed_hosts", HostAllowList)


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def request_host(authority: str) -> str | None:
    """Return the host of a ``Host`` value: lower case, no port, no brackets.

    Returns:
        The host, or ``None`` if the value is not ``host[:port]``,
        ``[ipv6][:port]`` or ``ipv4[:port]``.
    """
    value = authority.strip().lower()
    if value.startswith("["):
        host, closed, port = value[1:].partition("]")
        if not closed or (port and not _PORT_RE.fullmatch(port)):
            return None
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    host, colon, port = value.rpartition(":")
    if not colon:
        host = value
    elif not _PORT_RE.fullmatch(colon + port):
        return None
    # A trailing dot names the same host (an absolute DNS name).
    host = host.removesuffix(".")
    return host if _NAME_RE.fullmatch(host) else None


def _is_cross_site(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in _SAME_ORIGIN:
        return True
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return False
    if site is not None and origin.strip() == "null":
        # A page served with Referrer-Policy: no-referrer gets "Origin: null"
        # on its own form posts (the console sends same-origin, so its posts
        # carry the real origin); the browser's Sec-Fetch-Site still says
        # same-origin, and a page cannot forge that header.
        return False
    try:
        return URL(origin.strip()).origin() != request.url.origin()
    except ValueError:
        # "null" (sandboxed frames, file: pages) or garbage: not this listener.
        return True


def _refusal(request: web.Request) -> tuple[int, str, str] | None:
    """Return ``(status, message, reason)`` for a request to refuse, else ``None``."""
    # request.host is the Host header, or the authority of an absolute-form
    # target, which then takes precedence (RFC 9112 §3.2.2).
    absolute = not request.raw_path.startswith("/")
    if hdrs.HOST not in request.headers and not absolute:
        # Only HTTP/1.0 may omit it (aiohttp refuses HTTP/1.1 without one).
        return 400, "a Host header is required", "host"
    host = request_host(request.host)
    if host is None or not request.app[ALLOWED_HOSTS_KEY].allows(host):
        return 421, "this host name is not served here (admin.allowed_hosts)", "host"
    if request.method in SAFE_METHODS:
        return None
    if _is_cross_site(request):
        return 403, "cross-site requests are refused", "cross_site"
    # The console (a sub-application) takes HTML forms; it checks its own
    # CSRF token on every one of them.
    if request.content_type != "application/json" and not in_subapp(request):
        return 415, "Content-Type must be application/json", "content_type"
    return None


@web.middleware
async def admin_guard_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Refuse misdirected, cross-site and non-JSON requests before authentication.

    Raises:
        Denied: 421, 415, 403 or 400 (no Host), answered by the admin edge.
    """
    refusal = _refusal(request)
    if refusal is None:
        return await handler(request)
    status, message, reason = refusal
    log.warning(
        "admin_request_refused",
        reason=reason,
        status=status,
        method=request.method,
        host=request.headers.get(hdrs.HOST, "")[:200],
        content_type=request.headers.get(hdrs.CONTENT_TYPE, "")[:200],
    )
    raise Denied(status, reason, message)
