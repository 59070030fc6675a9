"""The JSON schemas of the admin API's bodies, for its OpenAPI document."""

from __future__ import annotations

from typing import Any, Final

from authproxy.keys.record import ALL_SCOPES, MAX_LIMIT
from authproxy.times import MAX_DURATION


def ref(name: str) -> dict[str, str]:
    """Return a JSON reference to one of ``SCHEMAS``."""
    return {"$ref": f"#/components/schemas/{name}"}


STRINGS = {"type": "array", "items": {"type": "string"}}
LIMIT = {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_LIMIT}
LIMITS = {
    "type": "object",
    "additionalProperties": False,
    "description": "0 or null means unlimited",
    "properties": {
        "requests_per_minute": LIMIT,
        "concurrent": LIMIT,
        "tokens_per_day": LIMIT,
        "tokens_per_month": LIMIT,
    },
}
TIME = {"type": ["string", "null"], "description": "RFC 3339 time or a duration (30d)"}
DURATION = {
    "description": "at most 100 years",
    "oneOf": [
        {"type": "string", "examples": ["15m", "24h"]},
        {"type": "number", "minimum": 0, "maximum": MAX_DURATION.total_seconds()},
    ],
}

PUBLIC_KEY = {
    "type": "string",
    "description": "an id_ed25519.pub line (ssh-ed25519 AAAA... comment): the "
    "key is proved by the ollama CLI's OLLAMA_AUTH signatures and has no token",
}
SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Key": {
        "type": "object",
        "description": "one key, in the same shape from every endpoint and from "
        "the CLI's --json; every time is RFC 3339 UTC with a Z",
        "required": [
            "id",
            "name",
            "kind",
            "scopes",
            "models",
            "limits",
            "note",
            "created_at",
            "expires_at",
            "disabled",
            "revoked_at",
            "tokens_valid_after",
            "previous",
            "status",
        ],
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z2-7]{12}$"},
            "name": {"type": "string"},
            "kind": {"enum": ["token", "password", "ollama"]},
            "public_key": {
                "type": "string",
                "description": "an ollama key's ed25519 public key (SSH base64)",
            },
            "fingerprint": {
                "type": "string",
                "pattern": "^SHA256:",
                "description": "an ollama key's public key fingerprint",
            },
            "scopes": {"type": "array", "items": {"enum": list(ALL_SCOPES)}},
            "models": STRINGS,
            "limits": LIMITS,
            "note": {"type": ["string", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
            "expires_at": {"type": ["string", "null"], "format": "date-time"},
            "disabled": {"type": "boolean"},
            "revoked_at": {"type": ["string", "null"], "format": "date-time"},
            "tokens_valid_after": {"type": ["string", "null"], "format": "date-time"},
            "previous": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "until": {"type": "string", "format": "date-time"},
                        "public_key": {"type": "string"},
                        "fingerprint": {"type": "string"},
                    },
                },
            },
            "status": {"enum": ["active", "disabled", "expired", "revoked"]},
        },
    },
    "KeyWithToken": {
        "allOf": [
            ref("Key"),
            {
                "type": "object",
                "required": ["token"],
                "properties": {
                    "token": {
                        "type": ["string", "null"],
                        "description": "shown only in this reply; null for "
                        "password and ollama keys",
                    },
                },
            },
        ]
    },
    "RotatedKey": {
        "allOf": [
            ref("KeyWithToken"),
            {
                "type": "object",
                "required": ["previous_valid_until"],
                "properties": {
                    "previous_valid_until": {
                        "type": ["string", "null"],
                        "format": "date-time",
                        "description": "until when the previous token, public key "
                        "or password works; null: it stopped at once",
                    },
                },
            },
        ]
    },
    "PasswordChange": {
        "type": "object",
        "required": ["password"],
        "additionalProperties": False,
        "properties": {
            "password": {"type": "string", "minLength": 12},
            "grace": DURATION,
        },
    },
    "NewKey": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "scopes": {"type": "array", "items": {"enum": list(ALL_SCOPES)}},
            "models": STRINGS,
            "limits": LIMITS,
            "expires_at": TIME,
            "note": {"type": "string"},
            "password": {"type": "string", "minLength": 12},
            "ollama_public_key": PUBLIC_KEY,
        },
    },
    "KeyChanges": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "scopes": {"type": "array", "items": {"enum": list(ALL_SCOPES)}},
            "models": STRINGS,
            "limits": LIMITS,
            "expires_at": TIME,
            "disabled": {"type": "boolean"},
            "note": {"type": ["string", "null"]},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "key_id", "expires_at"],
        "properties": {
            "token": {"type": "string"},
            "key_id": {"type": "string"},
            "scopes": STRINGS,
            "models": STRINGS,
            "expires_at": {"type": "string", "format": "date-time"},
        },
    },
    "UsageRow": {
        "type": "object",
        "properties": {
            "key_id": {"type": ["string", "null"]},
            "key": {"type": ["string", "null"], "description": "the key's name"},
            "model": {"type": "string"},
            "day": {"type": "string"},
            "replica": {"type": "string"},
            "requests": {"type": "integer"},
            "denied": {"type": "integer"},
            "prompt_tokens": {"type": "integer"},
            "completion_tokens": {"type": "integer"},
            "total_tokens": {"type": "integer"},
            "estimated_share": {"type": "number"},
        },
    },
}
