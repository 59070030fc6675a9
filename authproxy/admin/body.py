"""Admin API input: parse and validate JSON bodies and queries, naming the field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from authproxy.keys.lifecycle import UPDATABLE, KeySpec
from authproxy.keys.record import DEFAULT_SCOPES
from authproxy.metering.report import DIMENSIONS
from authproxy.proxy.body import send_continue
from authproxy.times import parse_duration, parse_when, seconds_to_duration

MAX_BODY = 64 * 1024
_CREATE_FIELDS = frozenset(
    {
        "name",
        "scopes",
        "models",
        "limits",
        "expires_at",
        "note",
        "password",
        "ollama_public_key",
    }
)


class BadRequestError(ValueError):
    """Invalid admin input; the message names the field."""


async def parse_json_object(
    request: web.Request, *, allow_empty: bool = False
) -> dict[str, Any]:
    """Read the body as a JSON object.

    Raises:
        BadRequestError: too big, not JSON (``NaN`` and ``Infinity`` are not),
            nested too deeply, or not an object.
    """
    # Expect: 100-continue is answered here, once authenticated (not on routing).
    await send_continue(request)
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise BadRequestError("body: too large")
    if not raw.strip() and allow_empty:
        return {}
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except BadRequestError:
        raise
    except RecursionError:
        raise BadRequestError("body: nested too deeply") from None
    except ValueError:
        raise BadRequestError("body: not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequestError("body: expected a JSON object")
    return data


def _refuse_constant(name: str) -> Any:
    # Python's json takes NaN, Infinity and -Infinity by default; RFC 8259
    # does not, and no field here means anything by them.
    raise BadRequestError(f"body: {name} is not valid JSON")


def _time(field: str, value: Any, now: datetime) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequestError(f"{field}: expected an RFC 3339 time, a duration or null")
    try:
        return parse_when(value, now)
    except ValueError as err:
        raise BadRequestError(f"{field}: {err}") from None


def _strings(field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequestError(f"{field}: expected a list of strings")
    return value


def parse_key_spec(body: dict[str, Any], now: datetime) -> KeySpec:
    """Validate a create request.

    Raises:
        BadRequestError: a missing or invalid field.
    """
    unknown = set(body) - _CREATE_FIELDS
    if unknown:
        raise BadRequestError(f"{sorted(unknown)[0]}: unknown field")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequestError("name: required, a string")
    password = body.get("password")
    if password is not None and not isinstance(password, str):
        raise BadRequestError("password: expected a string")
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise BadRequestError("note: expected a string")
    public_key = _optional_text(body, "ollama_public_key")
    return KeySpec(
        name=name,
        scopes=tuple(_strings("scopes", body["scopes"]))
        if "scopes" in body
        else DEFAULT_SCOPES,
        models=tuple(_strings("models", body.get("models", []))),
        limits=body.get("limits"),
        expires_at=_time("expires_at", body.get("expires_at"), now),
        note=note,
        password=password,
        ollama_public_key=public_key,
    )


def _optional_text(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise BadRequestError(f"{field}: expected a string")
    return value


def parse_update(body: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Validate a PATCH body (the store checks values again).

    Raises:
        BadRequestError: no or unknown fields, or a bad expires_at.
    """
    if not body:
        raise BadRequestError(
            f"body: give at least one of {', '.join(sorted(UPDATABLE))}"
        )
    unknown = set(body) - UPDATABLE
    if unknown:
        raise BadRequestError(f"{sorted(unknown)[0]}: not a field that can be changed")
    changes = dict(body)
    if "expires_at" in changes:
        changes["expires_at"] = _time("expires_at", changes["expires_at"], now)
    return changes


def _duration(field: str, value: Any) -> timedelta:
    try:
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            # 1e400 arrives as float inf, 1e20 overflows timedelta: both checked.
            return seconds_to_duration(value)
    except ValueError as err:
        raise BadRequestError(f"{field}: {err}") from None
    raise BadRequestError(f"{field}: expected a duration such as '24h' or seconds")


def parse_rotation(body: dict[str, Any]) -> tuple[timedelta, str | None]:
    """Read ``grace`` (default 0) and an ollama key's new ``ollama_public_key``.

    With no grace the old token (or public key) stops at once.

    Raises:
        BadRequestError: unknown fields or a bad duration.
    """
    unknown = set(body) - {"grace", "ollama_public_key"}
    if unknown:
        raise BadRequestError(f"{sorted(unknown)[0]}: unknown field")
    return _duration("grace", body.get("grace", 0)), _optional_text(
        body, "ollama_public_key"
    )


def parse_password_change(body: dict[str, Any]) -> tuple[timedelta, str]:
    """Read a password change: the new ``password`` and ``grace`` (default 0).

    Raises:
        BadRequestError: unknown fields, no password, or a bad duration.
    """
    unknown = set(body) - {"grace", "password"}
    if unknown:
        raise BadRequestError(f"{sorted(unknown)[0]}: unknown field")
    password = body.get("password")
    if not isinstance(password, str):
        raise BadRequestError("password: required, a string")
    return _duration("grace", body.get("grace", 0)), password


def parse_ttl(body: dict[str, Any]) -> timedelta:
    """Read ``ttl`` of a token request (default 15 minutes).

    Raises:
        BadRequestError: unknown fields or a bad duration.
    """
    unknown = set(body) - {"ttl", "models", "scopes"}
    if unknown:
        raise BadRequestError(f"{sorted(unknown)[0]}: unknown field")
    for field in ("models", "scopes"):
        if field in body:
            _strings(field, body[field])
    return _duration("ttl", body.get("ttl", "15m"))


def parse_usage_query(
    query: Mapping[str, str], now: datetime
) -> tuple[list[str], datetime | None, datetime | None]:
    """Read ``by``, ``since`` and ``until`` of a usage query.

    Raises:
        BadRequestError: an unknown dimension, or a bad or out-of-range time.
    """
    getall = getattr(query, "getall", None)
    raw = getall("by", []) if getall else [query.get("by", "")]
    by = [d.strip() for item in raw for d in item.split(",") if d.strip()]
    for dimension in by:
        if dimension not in DIMENSIONS:
            raise BadRequestError(
                f"by: unknown dimension {dimension!r} "
                "(key, model, day, replica, reason)"
            )
    since = _point("since", query.get("since"), now)
    until = _point("until", query.get("until"), now)
    return by, since, until


def _point(field: str, value: str | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_when(value, now, ago=True)
    except ValueError as err:
        raise BadRequestError(f"{field}: {err}") from None
