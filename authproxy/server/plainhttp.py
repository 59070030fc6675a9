"""The plain shape of an HTTP/1.1 request, which the lean front serves itself.

``plain_request`` accepts a strict subset of what aiohttp's parser (llhttp)
accepts, and only where both read the same bytes the same way: the lean
front hands everything else to aiohttp (``server.leanfront``), so this
parser never has to answer a malformed request, only to recognise a plain
one. Limits are aiohttp's own (``limits.max_request_line``,
``max_header_size``, ``max_headers``): a request at or past one goes to
aiohttp, which answers 431 as always.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from multidict import CIMultiDict, CIMultiDictProxy

# Bodies up to this size are served lean when whole (aiohttp's StreamReader
# would pause reading above twice it); larger ones go to aiohttp.
MAX_BODY: Final = 64 * 1024
# The whole head in one match: the request line (GET or POST, an
# origin-form target of printable ASCII, HTTP/1.1), then fields of an RFC
# 9110 token name, a colon and a value of printable ASCII (no tab, no
# control character, no obsolete folding, CRLF line ends only).
_HEAD: Final = re.compile(
    r"(GET|POST) (/[!-~]*) HTTP/1\.1\r\n"
    r"((?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ -~]*\r\n)*)\r\n"
)
# Framing and connection headers whose every form aiohttp handles itself.
_HANDED_HEADERS: Final = frozenset(
    {"transfer-encoding", "upgrade", "expect", "te", "http2-settings"}
)


class Limits(NamedTuple):
    """aiohttp's parser limits: a request at or past one goes to aiohttp."""

    max_line: int
    max_field: int
    max_headers: int


class PlainRequest(NamedTuple):
    """A request's parts as sent, once ``plain_request`` accepted them."""

    method: str
    target: str
    headers: CIMultiDictProxy[str]
    body: bytes
    end: int  # where the next request starts in the buffer


def plain_request(
    data: bytes, limits: Limits, plain_paths: frozenset[str]
) -> PlainRequest | None:
    """Parse a whole, plainly shaped request at the start of ``data``, else ``None``.

    Plain: an HTTP/1.1 GET or POST, printable ASCII head (no tabs, bare CR or
    LF, obsolete folding), an origin-form target without ``%``, ``#``, ``//``
    or dot segments that is not one of the app's own paths, token header
    names each sent once, none of the framing headers, ``Connection`` only
    as ``keep-alive``, a ``Content-Length`` of digits (or none) whose body
    is all in ``data`` and at most ``MAX_BODY``, and every line inside
    aiohttp's limits.
    """
    end = data.find(b"\r\n\r\n") + 4
    head = data[:end]
    if end < 4 or not head.isascii():
        return None
    match = _HEAD.fullmatch(head.decode("ascii"))
    if match is None:
        return None
    method, target, block = match.groups()
    lines = block.split("\r\n")
    lines.pop()  # after the last CRLF
    if (
        match.end(2) + 9 > limits.max_line
        or len(lines) > limits.max_headers
        or not _plain_target(target, plain_paths)
        or (lines and max(map(len, lines)) > limits.max_field)
    ):
        return None
    fields = _fields(lines)
    if fields is None:
        return None
    pairs, length = fields
    if length > MAX_BODY or len(data) - end < length:
        return None
    return PlainRequest(
        method,
        target,
        CIMultiDictProxy(CIMultiDict(pairs)),
        data[end : end + length],
        end + length,
    )


def _plain_target(target: str, plain_paths: frozenset[str]) -> bool:
    """Whether aiohttp and Ollama read the target as sent: no escapes, no dots."""
    path = target.partition("?")[0]
    return not (
        "%" in target
        or "#" in target
        or "//" in path
        or "/." in path
        or path in plain_paths
    )


def _fields(lines: list[str]) -> tuple[list[tuple[str, str]], int] | None:
    """The fields, values trimmed, and the body's length; ``None`` if not plain."""
    pairs: list[tuple[str, str]] = []
    lower: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        value = value.strip(" ")
        pairs.append((name, value))
        lower[name.lower()] = value
    if len(lower) != len(pairs) or not _HANDED_HEADERS.isdisjoint(lower):
        return None  # a name sent twice, or framing aiohttp decides
    connection = lower.get("connection")
    if connection is not None and connection.lower() != "keep-alive":
        return None  # close, or naming other hop-by-hop headers
    length = lower.get("content-length")
    if length is None:
        return pairs, 0
    if not length.isdigit() or len(length) > 6:
        return None
    return pairs, int(length)
