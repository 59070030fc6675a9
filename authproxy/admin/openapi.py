"""The admin API's OpenAPI 3.1 document (a test checks it against the router)."""

from __future__ import annotations

from typing import Any, Final

from authproxy import __version__
from authproxy.admin.schemas import DURATION, PUBLIC_KEY, SCHEMAS, STRINGS, ref


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "invalid input; the message names the field",
        401: "no or invalid admin credential",
        403: "the credential lacks the admin scope, or a write is cross-site "
        "(Origin or Sec-Fetch-Site)",
        404: "no key with this id or name",
        409: "Idempotency-Key reused with a different request",
        415: "a write without Content-Type: application/json (even with no body)",
        421: "the Host is not loopback, the admin.listen host or in "
        "admin.allowed_hosts (DNS rebinding)",
        503: "state.backend redis: the fleet's usage counters cannot be read",
    }
    return {str(c): _json(ref("Error"), text[c]) for c in codes}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


_KEY_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "key id or name",
    "schema": {"type": "string"},
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "a retry with the same value returns the first result",
    "schema": {"type": "string", "maxLength": 200},
}
PATHS: Final[dict[str, Any]] = {
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (no credential needed on this listener)",
            "security": [],
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                **_errors(421),
            },
        }
    },
    "/admin/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document (no credential needed)",
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1 document"},
                **_errors(421),
            },
        }
    },
    "/admin/keys": {
        "post": {
            "operationId": "create_key",
            "summary": "Create a key; its token is returned once",
            "parameters": [_IDEMPOTENCY],
            "requestBody": _body(ref("NewKey")),
            "responses": {
                "201": _json(ref("KeyWithToken"), "the key and its token"),
                **_errors(400, 401, 403, 409, 415, 421),
            },
        },
        "get": {
            "operationId": "list_keys",
            "summary": "List keys (never hashes or secrets)",
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"keys": {"type": "array", "items": ref("Key")}},
                    },
                    "all keys",
                ),
                **_errors(401, 403, 421),
            },
        },
    },
    "/admin/keys/{id}": {
        "parameters": [_KEY_ID],
        "get": {
            "operationId": "show_key",
            "summary": "Show one key",
            "responses": {
                "200": _json(ref("Key"), "the key"),
                **_errors(401, 403, 404, 421),
            },
        },
        "patch": {
            "operationId": "update_key",
            "summary": "Change scopes, models, expires_at, disabled or note",
            "requestBody": _body(ref("KeyChanges")),
            "responses": {
                "200": _json(ref("Key"), "the changed key"),
                **_errors(400, 401, 403, 404, 415, 421),
            },
        },
    },
    "/admin/keys/{id}/rotate": {
        "parameters": [_KEY_ID],
        "post": {
            "operationId": "rotate_key",
            "summary": "New token (an ollama key: new public key), same id; the "
            "old one works for the grace period",
            "parameters": [_IDEMPOTENCY],
            "requestBody": _body(
                {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "grace": DURATION,
                        "ollama_public_key": PUBLIC_KEY,
                    },
                },
                required=False,
            ),
            "responses": {
                "200": _json(ref("RotatedKey"), "the key and its new token"),
                **_errors(400, 401, 403, 404, 409, 415, 421),
            },
        },
    },
    "/admin/keys/{id}/passwd": {
        "parameters": [_KEY_ID],
        "post": {
            "operationId": "change_password",
            "summary": "New password for a password key, same id; the old one works "
            "for the grace period (a token or ollama key: 400, use rotate)",
            "requestBody": _body(ref("PasswordChange")),
            "responses": {
                "200": _json(ref("RotatedKey"), "the key (token: null)"),
                **_errors(400, 401, 403, 404, 415, 421),
            },
        },
    },
    "/admin/keys/{id}/revoke": {
        "parameters": [_KEY_ID],
        "post": {
            "operationId": "revoke_key",
            "summary": "Revoke for good; effective at once, cached or not",
            "responses": {
                "200": _json(
                    {
                        "allOf": [
                            ref("Key"),
                            {
                                "type": "object",
                                "required": ["changed"],
                                "properties": {
                                    "changed": {
                                        "type": "boolean",
                                        "description": "false: it was revoked before",
                                    }
                                },
                            },
                        ]
                    },
                    "the revoked key",
                ),
                **_errors(401, 403, 404, 415, 421),
            },
        },
    },
    "/admin/keys/{id}/tokens": {
        "parameters": [_KEY_ID],
        "post": {
            "operationId": "mint_token",
            "summary": "Mint a short-lived JWT with at most the key's rights",
            "requestBody": _body(
                {
                    "type": "object",
                    "properties": {
                        "ttl": DURATION,
                        "models": STRINGS,
                        "scopes": STRINGS,
                    },
                },
                required=False,
            ),
            "responses": {
                "201": _json(ref("Token"), "the JWT"),
                **_errors(400, 401, 403, 404, 415, 421),
            },
        },
    },
    "/admin/usage": {
        "get": {
            "operationId": "usage",
            "summary": "Token usage: the audit log, or the fleet's counters in Redis",
            "parameters": [
                {"name": "since", "in": "query", "schema": {"type": "string"}},
                {"name": "until", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "by",
                    "in": "query",
                    "description": "key, model, day, replica and/or reason "
                    "(repeat or comma-separate)",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "by": STRINGS,
                            "rows": {"type": "array", "items": ref("UsageRow")},
                            "source": {"enum": ["audit", "redis"]},
                            "days": {
                                "type": "object",
                                "description": "redis: the whole UTC days read",
                                "properties": {
                                    "from": {"type": "string"},
                                    "to": {"type": "string"},
                                },
                            },
                        },
                    },
                    "usage rows",
                ),
                **_errors(400, 401, 403, 421, 503),
            },
        }
    },
}

OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "authproxy admin API",
        "version": __version__,
        "description": "Key life-cycle and usage for authproxy. Listens on "
        "admin.listen (loopback by default), never on the proxy port. Every "
        "POST and PATCH must send Content-Type: application/json, even without "
        "a body; the Host must be loopback, the admin.listen host or in "
        'admin.allowed_hosts. Every error is {"error": "..."}, an unknown '
        "path's 404 and a wrong method's 405 (with Allow) included.",
    },
    "servers": [{"url": "http://127.0.0.1:11436"}],
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key with the admin scope, or an admin JWT",
            }
        },
        "schemas": SCHEMAS,
    },
    "paths": PATHS,
}
