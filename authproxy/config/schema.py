"""Build frozen config dataclasses from plain mappings, naming the key on every error.

Each dataclass field is read by its annotated type (``bool``, ``int``, ``float``,
``str``, ``tuple[str, ...]``, a nested dataclass, or ``X | None``). A field's
metadata may carry ``parse`` (a converter raising ``ValueError``) and
``check`` (a predicate plus the expectation it states). The parsers of
options with a syntax of their own live here too (durations, sizes, the
upstream URL and its base path, ``server.root_path``, ``cors.origins``).
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

from yarl import URL

from authproxy.errors import ConfigError
from authproxy.times import parse_duration, seconds_to_duration

T = TypeVar("T")

_SIZE_RE: Final = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?", re.IGNORECASE)
_SIZE_UNITS: Final = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def option(
    default: Any,
    *,
    parse: Callable[[Any], Any] | None = None,
    check: tuple[Callable[[Any], bool], str] | None = None,
    secret: bool = False,
) -> Any:
    """Declare a config field with its default, converter and range check."""
    meta = {"parse": parse, "check": check, "secret": secret}
    if isinstance(default, list | dict):
        raise TypeError("mutable defaults are not allowed")
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type[T]) -> Any:
    """Declare a nested config section defaulting to its own defaults."""
    return dataclasses.field(default_factory=cls)


def seconds(value: Any) -> float:
    """Convert a number of seconds or a duration string such as ``10m``."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration such as 30s, 10m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a non-negative duration")
        # YAML's .inf and .nan, and numbers past any sane setting, are refused.
        return seconds_to_duration(value).total_seconds()
    if isinstance(value, str):
        return parse_duration(value).total_seconds()
    raise ValueError("expected seconds or a duration such as 30s, 10m")


def process_count(value: Any) -> int:
    """Convert a number of processes, or ``auto`` (one per CPU)."""
    if value == "auto":
        return os.cpu_count() or 1
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError("expected an int > 0 or auto")


def size(value: Any) -> int:
    """Convert a byte count or a size string such as ``100MiB``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        if match:
            unit = (match.group(2) or "b").lower()
            return int(match.group(1)) * _SIZE_UNITS[unit]
    raise ValueError("expected a byte count or a size such as 100MiB")


_PATH_CHARS: Final = re.compile(
    r"(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+)*"
)
_DOT_SEGMENT: Final = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")


def _base_path(raw: str) -> str:
    """Validate a base path (``/olla/ollama``); return it without a final ``/``.

    No dot segments (also encoded), no empty segments, no encoded slash or
    backslash: every target is joined below it, so it must mean one path.
    """
    path = raw.rstrip("/")
    if not _PATH_CHARS.fullmatch(path) or _DOT_SEGMENT.search(unquote(path)):
        raise ValueError(
            "expected a path of plain segments such as /olla/ollama "
            "(no '.', '..' or empty segments)"
        )
    if re.search(r"%(?:2f|5c)", path, re.IGNORECASE):
        raise ValueError("expected a path without encoded '/' or '\\'")
    return path


def upstream_url(value: Any) -> str:
    """Validate an upstream URL: an origin, optionally with a base path."""
    if not isinstance(value, str):
        raise ValueError("expected an http(s) URL")
    try:
        url = URL(value)
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("expected an http(s) URL") from None
    if url.scheme not in {"http", "https"} or not url.host:
        raise ValueError("expected an http(s) URL such as http://127.0.0.1:11434")
    if url.user or url.password or parts.query or parts.fragment or "?" in value:
        raise ValueError("expected a URL without credentials, query or fragment")
    return str(url.origin()) + _base_path(parts.path)


def root_path(value: Any) -> str:
    """Validate ``server.root_path``: empty, or a base path such as ``/ollama``."""
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ValueError("expected a path such as /ollama, or empty")
    return _base_path(value)


_ORIGIN_ENTRY: Final = re.compile(
    r"[a-z][a-z0-9+.-]*://"
    r"(?:\[[0-9a-f:.]+\]|(?=[a-z0-9.*-])[a-z0-9.-]*\*?[a-z0-9.-]*)"
    r"(?::(?:[0-9]+|\*))?"
)


def cors_origins(value: Any) -> str:
    """Validate ``cors.origins``; return the entries joined by commas.

    A list, or one string of entries separated by commas or spaces (as in
    ``AUTHPROXY_CORS_ORIGINS``): ``*``, or ``scheme://host[:port]`` with at most
    one ``*`` standing for host name characters or a port
    (``http://localhost:*``, ``https://*.example.com``), as ``OLLAMA_ORIGINS``.
    """
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError("expected a list of origins such as https://app.example.com")
    entries = [item.strip().lower() for item in items]
    for entry in entries:
        bad = entry.count("*") > 1 or not _ORIGIN_ENTRY.fullmatch(entry)
        if entry != "*" and bad:
            raise ValueError(
                f"{entry!r} is not '*' or an origin such as https://app.example.com "
                "or http://localhost:* (scheme://host[:port], no path, one '*')"
            )
    return ",".join(dict.fromkeys(entries))


def build(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``.

    Args:
        cls: a frozen config dataclass.
        data: the parsed YAML mapping (or ``None`` for all defaults).
        path: the dotted key prefix used in error messages.

    Raises:
        ConfigError: a key is unknown or a value is invalid; the message names
            the dotted key, what was expected and what was seen.

    Returns:
        The dataclass instance.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path.rstrip('.') or '<root>'}: expected a mapping, got {data!r}"
        )
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}{key}: unknown key")
    kwargs: dict[str, Any] = {}
    for fld in dataclasses.fields(cls):  # type: ignore[arg-type]
        if fld.name in data:
            key = f"{path}{fld.name}"
            kwargs[fld.name] = _convert(hints[fld.name], data[fld.name], key, fld)
    return cls(**kwargs)


def _convert(tp: Any, value: Any, key: str, fld: dataclasses.Field[Any]) -> Any:
    if dataclasses.is_dataclass(tp):
        return build(tp, value, f"{key}.")  # type: ignore[arg-type]
    args = typing.get_args(tp)
    optional = type(None) in args and typing.get_origin(tp) in {
        typing.Union,
        types.UnionType,
    }
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: expected {_describe(tp, fld)}, got null")
    if optional:
        tp = next(a for a in args if a is not type(None))
    parse = fld.metadata.get("parse")
    try:
        result = parse(value) if parse else _coerce(tp, value)
    except ValueError as err:
        detail = str(err) or f"expected {_describe(tp, fld)}"
        raise ConfigError(f"{key}: {detail}, got {value!r}") from None
    check = fld.metadata.get("check")
    if check and not check[0](result):
        raise ConfigError(f"{key}: expected {check[1]}, got {value!r}")
    return result


def _coerce(tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError("expected true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError("expected an integer")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ValueError("expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    if typing.get_origin(tp) is tuple:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError("expected a list of strings")
    raise TypeError(f"unsupported config type {tp!r}")


def _describe(tp: Any, fld: dataclasses.Field[Any]) -> str:
    check = fld.metadata.get("check")
    return check[1] if check else getattr(tp, "__name__", str(tp))


def walk(cls: type[Any], prefix: str = "") -> Iterator[tuple[str, bool]]:
    """Yield ``(dotted_key, is_secret)`` for every leaf option of ``cls``."""
    for key, _, secret in leaves(cls, prefix):
        yield key, secret


def leaves(cls: type[Any], prefix: str = "") -> Iterator[tuple[str, Any, bool]]:
    """Yield ``(dotted_key, type, is_secret)`` for every leaf option of ``cls``."""
    hints = typing.get_type_hints(cls)
    for fld in dataclasses.fields(cls):
        tp = hints[fld.name]
        if dataclasses.is_dataclass(tp):
            yield from leaves(tp, f"{prefix}{fld.name}.")  # type: ignore[arg-type]
        else:
            yield f"{prefix}{fld.name}", tp, bool(fld.metadata.get("secret"))


def is_text(tp: Any) -> bool:
    """Tell whether an option holds text (``str`` or ``str | None``)."""
    return tp is str or set(typing.get_args(tp)) == {str, type(None)}


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``key == "a.b.c"``, creating mappings.

    Raises:
        ConfigError: an intermediate value is not a mapping.
    """
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(parts[: i + 1])}: expected a mapping")
        node = child
    node[parts[-1]] = value
