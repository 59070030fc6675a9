"""The console's key forms, read into the JSON shapes the admin API validates.

Each form becomes the body the API would get, and the API's parsers
(``admin.body``) and the store check it, so both say the same about the same
input. Empty fields mean "not given" (the API's default); limits are whole
numbers, 0 or empty for none; models a comma-separated list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from multidict import MultiDictProxy

from authproxy.admin.body import BadRequestError
from authproxy.times import parse_timestamp

Form = MultiDictProxy[Any]

# The form's field -> the key's ``limits`` entry.
LIMIT_FIELDS: Final = {
    "rpm": "requests_per_minute",
    "concurrency": "concurrent",
    "tokens_per_day": "tokens_per_day",
    "tokens_per_month": "tokens_per_month",
}
KIND_FIELDS: Final = ("token", "password", "ollama")
NEVER: Final = frozenset({"", "never", "none"})


def text(form: Form, name: str) -> str:
    """Return a text field, stripped; empty if absent or not text (a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _models(form: Form) -> list[str]:
    return [m.strip() for m in text(form, "models").split(",") if m.strip()]


def _scopes(form: Form) -> list[str]:
    return [s for s in form.getall("scopes", []) if isinstance(s, str)]


def _limits(form: Form, *, all_fields: bool) -> dict[str, int | None]:
    """Read the limit fields; ``all_fields`` gives every one (empty: none)."""
    limits: dict[str, int | None] = {}
    for field, name in LIMIT_FIELDS.items():
        raw = text(form, field)
        if not raw:
            if all_fields:
                limits[name] = None
            continue
        if not raw.isdigit():
            raise BadRequestError(f"{field}: expected a whole number (0: no limit)")
        limits[name] = int(raw)
    return limits


def confirmed(form: Form) -> None:
    """Refuse a dangerous action whose confirmation box was not ticked.

    Raises:
        BadRequestError: ``confirm`` is not ``yes``.
    """
    if text(form, "confirm") != "yes":
        raise BadRequestError(
            "confirm: this action needs confirmation: tick the box and send it again"
        )


def create_body(form: Form) -> dict[str, Any]:
    """Read the new-key form into a ``POST /admin/keys`` body.

    Raises:
        BadRequestError: an unknown kind, a kind's missing field, a bad limit.
    """
    kind = text(form, "kind") or "token"
    if kind not in KIND_FIELDS:
        raise BadRequestError("kind: expected token, password or ollama")
    body: dict[str, Any] = {"name": text(form, "name"), "scopes": _scopes(form)}
    if kind == "password":
        password = form.get("password")
        if not isinstance(password, str) or not password:
            raise BadRequestError("password: required for a password key")
        body["password"] = password  # as typed: spaces may be part of it
    elif kind == "ollama":
        public_key = text(form, "public_key")
        if not public_key:
            raise BadRequestError("public_key: required for an ollama key")
        body["ollama_public_key"] = public_key
    if models := _models(form):
        body["models"] = models
    if (expires := text(form, "expires")).lower() not in NEVER:
        body["expires_at"] = expires
    if limits := _limits(form, all_fields=False):
        body["limits"] = limits
    if note := text(form, "note"):
        body["note"] = note
    return body


def form_values_of(form: Form) -> dict[str, Any]:
    """Return what a submitted key form held, to show it again (never the password)."""
    return {
        "name": text(form, "name"),
        "kind": text(form, "kind") or "token",
        "public_key": text(form, "public_key"),
        "scopes": _scopes(form),
        "models": text(form, "models"),
        "expires": text(form, "expires"),
        "note": text(form, "note"),
        "limits": {field: text(form, field) for field in LIMIT_FIELDS},
    }


def update_body(form: Form) -> dict[str, Any]:
    """Read the edit form into a ``PATCH /admin/keys/{id}`` body (every field).

    Raises:
        BadRequestError: a bad limit.
    """
    expires = text(form, "expires")
    return {
        "scopes": _scopes(form),
        "models": _models(form),
        "expires_at": None if expires.lower() in NEVER else expires,
        "limits": _limits(form, all_fields=True),
        "note": text(form, "note") or None,
    }


def changed_fields(
    changes: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """Keep the parsed changes that differ from the key's ``describe`` view."""
    kept = {}
    for name, value in changes.items():
        now = current.get(name)
        if name in {"scopes", "models"}:
            differs = list(value) != list(now or [])
        elif name == "limits":
            wanted = {k: v for k, v in value.items() if v}
            differs = wanted != {k: v for k, v in (now or {}).items() if v}
        elif name == "expires_at":
            differs = (value.isoformat() if value else None) != _iso(now)
        else:
            differs = value != now
        if differs:
            kept[name] = value
    return kept


def _iso(value: Any) -> str | None:
    return parse_timestamp(value).isoformat() if isinstance(value, str) else None


def rotation_body(form: Form) -> dict[str, Any]:
    """Read the rotate form into a ``POST .../rotate`` body."""
    body: dict[str, Any] = {"grace": text(form, "grace") or "0s"}
    if public_key := text(form, "public_key"):
        body["ollama_public_key"] = public_key
    return body


def password_body(form: Form) -> dict[str, Any]:
    """Read the password form into a ``POST .../passwd`` body."""
    password = form.get("password")
    return {
        "password": password if isinstance(password, str) else "",
        "grace": text(form, "grace") or "0s",
    }


def token_body(form: Form) -> dict[str, Any]:
    """Read the JWT form into a ``POST .../tokens`` body (no scopes: the key's)."""
    body: dict[str, Any] = {"ttl": text(form, "ttl") or "15m"}
    if scopes := _scopes(form):
        body["scopes"] = scopes
    return body
