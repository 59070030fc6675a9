"""Read one field of a multipart/form-data body the way Go's ``FormValue`` does.

``/v1/audio/transcriptions`` is the one model route with a multipart body:
Ollama calls ``ParseMultipartForm`` and ``FormValue("model")``, which returns
the first value of the *query string* if it has one, then the first form part
named ``model`` (shared/ollama-wire.md §1c). Go's multipart reader also
accepts boundary lines with trailing white space, bare-LF line ends, header
continuation lines, quoted-printable parts and RFC 2231 parameters.

As with JSON bodies, the proxy keeps the bytes and refuses anything that could
be read two ways: a query string, any occurrence of the boundary that is not a
plain CRLF delimiter line, unusual part headers, and a field given twice.
"""

from __future__ import annotations

import re
from typing import Final

from authproxy.proxy.jsonbody import BodyFormatError

# RFC 9110 §5.6.2 token characters (a grammar, not a credential).
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # noqa: S105
_PARAM_RE: Final = re.compile(rf';[ \t]*({_TOKEN})=({_TOKEN}|"[^"\\\r\n]*")[ \t]*')
_TYPE_RE: Final = re.compile(rf"[ \t]*({_TOKEN}/{_TOKEN})[ \t]*")
_DISPOSITION_RE: Final = re.compile(rf"[ \t]*({_TOKEN})[ \t]*")
_HEADER_RE: Final = re.compile(rf"({_TOKEN}):[ \t]*([^\r\n]*?)[ \t]*")


def _params(value: str, head: re.Pattern[str]) -> tuple[str, dict[str, str]]:
    """Split ``type; a=b; c="d"`` strictly; refuse escapes, duplicates, RFC 2231.

    Raises:
        BodyFormatError: the value is not in the plain form.
    """
    match = head.match(value)
    if match is None:
        raise BodyFormatError("request body: malformed multipart header")
    kind, pos, params = match.group(1).lower(), match.end(), {}
    while pos < len(value):
        found = _PARAM_RE.match(value, pos)
        if found is None:
            raise BodyFormatError("request body: malformed multipart header")
        name = found.group(1).lower()
        if name in params or name.endswith("*"):
            raise BodyFormatError("request body: malformed multipart header")
        params[name] = found.group(2).strip('"')
        pos = found.end()
    return kind, params


def boundary_of(content_type: str) -> str:
    """Return the boundary of a ``multipart/form-data`` Content-Type.

    Raises:
        BodyFormatError: another media type, or no usable boundary.
    """
    kind, params = _params(content_type, _TYPE_RE)
    boundary = params.get("boundary", "")
    if kind != "multipart/form-data" or not 0 < len(boundary) <= 70:
        raise BodyFormatError("request body: expected multipart/form-data")
    return boundary


def form_field(body: bytes, content_type: str, name: str) -> str | None:
    """Return the one value of form field ``name``, or ``None`` if absent.

    Args:
        body: the raw body.
        content_type: the request's Content-Type header.
        name: the field, matched exactly as Go does.

    Raises:
        BodyFormatError: the body is not a plain multipart/form-data body, or
            names the field twice or as a file.
    """
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    # Every occurrence of the boundary must be a plain delimiter line, so Go's
    # more lenient reader cannot find a part boundary this one does not.
    pieces = body.split(delimiter)
    if len(pieces) < 3 or pieces[-1][:2] != b"--":
        raise BodyFormatError("request body: malformed multipart body")
    if pieces[0] and not pieces[0].endswith(b"\r\n"):
        raise BodyFormatError("request body: malformed multipart body")
    found: list[str] = []
    for piece in pieces[1:-1]:
        if not piece.startswith(b"\r\n") or not piece.endswith(b"\r\n"):
            raise BodyFormatError("request body: malformed multipart body")
        value = _part_value(piece[2:-2], name)
        if value is not None:
            found.append(value)
    if len(found) > 1:
        raise BodyFormatError(f"request body: form field {name!r} given twice")
    return found[0] if found else None


def _part_value(part: bytes, name: str) -> str | None:
    """Return the part's text if it is the field ``name``.

    Raises:
        BodyFormatError: unusual headers, or the field sent as a file.
    """
    head, sep, content = part.partition(b"\r\n\r\n")
    if not sep:
        raise BodyFormatError("request body: malformed multipart part")
    try:
        lines = head.decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        raise BodyFormatError("request body: malformed multipart part") from None
    disposition: str | None = None
    for line in lines:
        match = _HEADER_RE.fullmatch(line)
        if match is None:
            raise BodyFormatError("request body: malformed multipart part")
        header = match.group(1).lower()
        if header == "content-transfer-encoding":
            # Go decodes quoted-printable parts by itself.
            raise BodyFormatError("request body: Content-Transfer-Encoding")
        if header == "content-disposition":
            if disposition is not None:
                raise BodyFormatError("request body: malformed multipart part")
            disposition = match.group(2)
    if disposition is None:
        return None
    kind, params = _params(disposition, _DISPOSITION_RE)
    if kind != "form-data" or params.get("name") != name:
        return None
    if "filename" in params:
        raise BodyFormatError(f"request body: form field {name!r} sent as a file")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        raise BodyFormatError("request body: invalid UTF-8") from None
