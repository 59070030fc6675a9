"""Header filter sets and the X-Forwarded builder; pure functions.

Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy, in either
direction, nor do headers the ``Connection`` header names. The client's
credentials never reach Ollama: its cloud passthrough would forward them to
ollama.com (see shared/ollama-wire.md §1e).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from typing import Final

from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.memo import remember

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Credentials for the proxy itself, and headers the proxy rebuilds.
REQUEST_DROP: Final = HOP_BY_HOP | {
    "authorization",
    "x-api-key",
    "cookie",
    "host",
    "content-length",
    "accept-encoding",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
}
UNTRUSTED_DROP: Final = frozenset({"forwarded", "x-real-ip"})
_UNTRUSTED_REQUEST_DROP: Final = REQUEST_DROP | UNTRUSTED_DROP
REQUEST_ID_HEADER: Final = "X-Request-ID"
_REQUEST_ID_RE: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
TRUST_MEMO_SIZE: Final = 4096
_NO_TOKENS: Final[frozenset[str]] = frozenset()


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse addresses and CIDR ranges.

    Raises:
        ValueError: a value is not an IP address or network.
    """
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values)


class TrustedProxies:
    """The trusted proxy networks, answering ``address in trusted``.

    Answers are remembered per address string (a few peers ask on every
    request; parsing an address each time was 5 % of a request's CPU). The
    memo is bounded in entries and in key length (``authproxy.memo``), so
    spoofed X-Forwarded-For hops can neither grow it nor fill it with long
    strings.
    """

    __slots__ = ("_seen", "networks")

    def __init__(self, networks: tuple[IPNetwork, ...] = ()) -> None:
        self.networks = networks
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: str) -> bool:
        if not self.networks:
            return False
        known = self._seen.get(address)
        if known is None:
            known = self._check(address)
            remember(self._seen, address, known, TRUST_MEMO_SIZE)
        return known

    def _check(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def connection_tokens(
    headers: Mapping[str, str] | CIMultiDictProxy[str],
) -> frozenset[str]:
    """Return the lower-cased header names listed in ``Connection``."""
    if "Connection" not in headers:
        return _NO_TOKENS
    getall = getattr(headers, "getall", None)
    values = getall("Connection", []) if getall else [headers.get("Connection", "")]
    if len(values) == 1 and (known := _TOKENS_SEEN.get(values[0])) is not None:
        return known  # "keep-alive", "close": a few values come on every request
    tokens = frozenset(
        t.strip().lower() for v in values for t in v.split(",") if t.strip()
    )
    if len(values) == 1:
        remember(_TOKENS_SEEN, values[0], tokens, KEEP_MEMO_SIZE)
    return tokens


def client_address(peer: str, forwarded_for: list[str], trusted: TrustedProxies) -> str:
    """Find the client address, walking X-Forwarded-For right to left.

    Only hops appended by trusted proxies are believed (uvicorn's rule).
    """
    if peer not in trusted:
        return peer
    hops = [h.strip() for v in forwarded_for for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer


class _RandomIds:
    """Random 32-hex-digit ids, from a pool of ``os.urandom`` bytes.

    ``secrets.token_hex(16)`` is one ``getrandom(2)`` per request; the pool
    takes one per 256 ids. A forked child starts a pool of its own.
    """

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def reset(self) -> None:
        self._pool = b""
        self._at = 0

    def next(self) -> str:
        at = self._at
        if at >= len(self._pool):
            self._pool, at = os.urandom(_ID_BYTES * 256), 0
        self._at = at + _ID_BYTES
        return self._pool[at : at + _ID_BYTES].hex()


_ID_BYTES: Final = 16
_random_ids = _RandomIds()
os.register_at_fork(after_in_child=_random_ids.reset)


def request_id(value: str | None) -> str:
    """Keep a sane client-sent request id, or generate a new one."""
    if value is not None and _REQUEST_ID_RE.fullmatch(value):
        return value
    return _random_ids.next()


def forward_request_headers(
    headers: CIMultiDictProxy[str],
    *,
    upstream_host: str,
    peer: str,
    scheme: str,
    request_id: str,
    trusted_peer: bool,
) -> CIMultiDict[str]:
    """Build the headers sent upstream.

    Args:
        headers: the client's request headers.
        upstream_host: the ``Host`` to send (Ollama rejects foreign hosts).
        peer: the address of the TCP peer.
        scheme: ``http`` or ``https``, as the client connected.
        request_id: the request id to send as ``X-Request-ID``.
        trusted_peer: the peer is a configured trusted proxy, so its
            forwarding headers are extended instead of replaced.

    Returns:
        The filtered headers, plus Host, X-Forwarded-* and X-Request-ID.
    """
    listed = connection_tokens(headers)
    drop = REQUEST_DROP if trusted_peer else _UNTRUSTED_REQUEST_DROP
    if listed - drop:  # Connection names a header the sets do not drop anyway
        out = _without(headers, drop | listed, CIMultiDict())
    else:
        keep = _TRUSTED_KEEP if trusted_peer else _UNTRUSTED_KEEP
        out = _kept(headers, keep, CIMultiDict())
    # Host, X-Forwarded-* and X-Request-ID were all dropped: add, not set.
    out.add("Host", upstream_host)
    forwarded_for = peer
    proto = scheme
    host = headers.get("Host", "")
    if trusted_peer:
        prior = ", ".join(headers.getall("X-Forwarded-For", []))
        if prior:
            forwarded_for = f"{prior}, {peer}"
        proto = headers.get("X-Forwarded-Proto", scheme)
        host = headers.get("X-Forwarded-Host", host)
    out.add("X-Forwarded-For", forwarded_for)
    out.add("X-Forwarded-Proto", proto)
    if host:
        out.add("X-Forwarded-Host", host)
    out.add(REQUEST_ID_HEADER, request_id)
    return out


def filter_response_headers(
    headers: CIMultiDictProxy[str], out: CIMultiDict[str] | None = None
) -> CIMultiDict[str]:
    """Copy the upstream response headers minus hop-by-hop ones (into ``out``).

    ``out`` is a response's own, still empty, headers: filling them saves
    the copy ``StreamResponse(headers=...)`` would make.
    """
    if out is None:
        out = CIMultiDict()
    listed = connection_tokens(headers)
    if listed - HOP_BY_HOP:  # more than "keep-alive" or "close"
        return _without(headers, HOP_BY_HOP | listed, out)
    return _kept(headers, _RESPONSE_KEEP, out)


class _KeepMemo(dict[str, bool]):
    """Whether a header name is kept by a drop set, remembered per exact name.

    ``name.lower()`` per header was most of the filtering's cost; a few names
    come on every request. Bounded, like ``TrustedProxies``, in entries and in
    the length of the names it keeps (``authproxy.memo``).
    """

    def __init__(self, drop: frozenset[str]) -> None:
        super().__init__()
        self.drop = drop

    def __missing__(self, name: str) -> bool:
        keep = name.lower() not in self.drop
        remember(self, name, keep, KEEP_MEMO_SIZE)  # a long name: judged, not kept
        return keep


KEEP_MEMO_SIZE: Final = 1024
_TRUSTED_KEEP: Final = _KeepMemo(REQUEST_DROP)
_UNTRUSTED_KEEP: Final = _KeepMemo(_UNTRUSTED_REQUEST_DROP)
_RESPONSE_KEEP: Final = _KeepMemo(HOP_BY_HOP)
# Connection header values and their tokens, bounded like the keep memos.
_TOKENS_SEEN: Final[dict[str, frozenset[str]]] = {}


def _kept(
    headers: CIMultiDictProxy[str], keep: _KeepMemo, out: CIMultiDict[str]
) -> CIMultiDict[str]:
    for name, value in headers.items():
        if keep[name]:
            out.add(name, value)
    return out


def _without(
    headers: CIMultiDictProxy[str], drop: frozenset[str], out: CIMultiDict[str]
) -> CIMultiDict[str]:
    for name, value in headers.items():
        if name.lower() not in drop:
            out.add(name, value)
    return out
