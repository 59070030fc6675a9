"""Read a JSON request body so that what the proxy checks is what Ollama binds.

Ollama binds bodies with Go's ``encoding/json`` (shared/ollama-wire.md §8b),
which matches object keys to struct fields case-insensitively (after decoding
escapes, with Unicode simple folding: the Kelvin sign is a ``k``), lets the
last match win, reads only the first JSON value, turns invalid UTF-8 and lone
surrogates into U+FFFD and nests 10,000 levels deep.

The proxy keeps the client's bytes and refuses every body those rules could
read differently from a strict parser, rather than re-serialising it: a body
this module accepts has exactly one reading, so forwarding it unchanged is
safe, and streamed, signed or hand-made bodies stay byte for byte as sent.
Refused with 400: invalid UTF-8, lone surrogates, anything after the first
value, a byte order mark, nesting deeper than ``MAX_DEPTH``, and two keys of
one object that fold together. Keys are compared with ``str.casefold``, which
folds at least everything Go's simple folding does (it also folds ``ß`` with
``ss``), so a collision Go would see is never missed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import orjson

# Real request bodies nest a dozen levels (tool schemas, message parts); Python
# walks recurse, and Go accepts 10,000, so anything deeper is refused.
MAX_DEPTH: Final = 128
_BOM: Final = b"\xef\xbb\xbf"


class BodyFormatError(ValueError):
    """A body Ollama could read differently; the message is safe to return."""


def _parse_error(err: orjson.JSONDecodeError) -> BodyFormatError:
    """Translate orjson's message into one a client can act on (never echoing)."""
    text = str(err)
    if "after document" in text:
        return BodyFormatError("request body: data after the JSON value")
    if "surrogate" in text or "UTF-8" in text:
        return BodyFormatError("request body: invalid UTF-8 or a lone surrogate")
    if "depth" in text or "recursion" in text:
        return BodyFormatError("request body: nested too deeply")
    if "empty" in text:
        return BodyFormatError("request body: empty")
    return BodyFormatError("request body: not valid JSON")


def parse_object(body: bytes) -> dict[str, Any]:
    """Parse a body that must be one unambiguous JSON object.

    Args:
        body: the raw (decoded) request body.

    Raises:
        BodyFormatError: anything Go's decoder could read differently, or not
            an object.

    Returns:
        The object. Its keys are unique under case folding at every level.
    """
    if body.startswith(_BOM):
        # Go refuses it too ("invalid character"), so this only says why.
        raise BodyFormatError("request body: a byte order mark is not allowed")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise _parse_error(err) from None
    if not isinstance(data, dict):
        raise BodyFormatError("request body: expected a JSON object")
    check_unambiguous(data)
    return data


# A tuple, not ``dict | list``: that expression builds a union object per value.
_CONTAINERS: Final = (dict, list)


def check_unambiguous(data: Any, depth: int = 1) -> None:
    """Refuse nesting past ``MAX_DEPTH`` and keys that collide under folding.

    orjson keeps the last of two identical keys, as Go does, so only keys that
    differ in case (or by an escape, or a Unicode fold) can disagree. The
    recursion is bounded by ``MAX_DEPTH``.

    Raises:
        BodyFormatError: too deep, or two keys of one object fold together.
    """
    if depth > MAX_DEPTH:
        raise BodyFormatError("request body: nested too deeply")
    if isinstance(data, dict):
        if len(data) > 1 and len({key.casefold() for key in data}) != len(data):
            raise BodyFormatError(
                "request body: two keys differ only in case; Ollama would read "
                "the last of them"
            )
        values: Iterable[Any] = data.values()
    elif isinstance(data, list):
        values = data
    else:
        return
    for value in values:
        if isinstance(value, _CONTAINERS):
            check_unambiguous(value, depth + 1)


# The only non-ASCII characters whose Unicode simple fold is an ASCII letter
# (CaseFolding.txt; checked against Go in tests/test_jsonbody.py).
_NON_ASCII_FOLDS: Final = {"\u212a": "k", "\u017f": "s"}


def folds_to(key: str, name: str) -> bool:
    """Tell whether Go's decoder binds ``key`` to the field named ``name``.

    Args:
        key: an object key, escapes already decoded.
        name: a lower-case ASCII field name.
    """
    if len(key) != len(name):
        return False
    for got, want in zip(key, name, strict=True):
        if got == want:
            continue
        if got.isascii():
            if got.lower() != want:
                return False
        elif _NON_ASCII_FOLDS.get(got) != want:
            return False
    return True


def folded_get(obj: dict[str, Any], name: str) -> Any:
    """Return the value Go binds to the field ``name`` (``None`` if absent).

    The object has passed ``check_unambiguous``, so at most one key folds to
    ``name``; an exact match is tried first because it is the common case.
    """
    if name in obj:
        return obj[name]
    for key, value in obj.items():
        if folds_to(key, name):
            return value
    return None
