"""admin.schemas: what the admin API really sends and accepts matches its schemas."""

from __future__ import annotations

import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from authproxy.admin.openapi import OPENAPI
from authproxy.admin.schemas import SCHEMAS
from tests.support.admin import Stack
from tests.support.ollama import OllamaIdentity
from tests.support.payloads import CHAT

DOCUMENT = "urn:authproxy:admin-openapi"
_REGISTRY = Registry().with_resource(
    DOCUMENT, Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
)


def errors_of(instance: Any, pointer: str, *, exact: bool = False) -> list[str]:
    """Return why ``instance`` does not match the document's schema at ``pointer``.

    ``exact`` also refuses a field the schema does not name.
    """
    schema: dict[str, Any] = {"$ref": f"{DOCUMENT}#{pointer}"}
    if exact:
        schema["unevaluatedProperties"] = False
    validator = Draft202012Validator(schema, registry=_REGISTRY)
    return [error.message for error in validator.iter_errors(instance)]


_STAMP = re.compile(r"\d{4}-\d\d-\d\dT")


def stamps(value: Any) -> list[str]:
    """Return every RFC 3339 time anywhere in a reply."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in stamps(v)]
    if isinstance(value, list):
        return [s for v in value for s in stamps(v)]
    return [value] if isinstance(value, str) and _STAMP.match(value) else []


def _escaped(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


def response_schema(path: str, method: str, status: int) -> str:
    """Return the pointer to the documented schema of one response."""
    assert str(status) in OPENAPI["paths"][path][method.lower()]["responses"]
    return (
        f"/paths/{_escaped(path)}/{method.lower()}/responses/{status}"
        "/content/application~1json/schema"
    )


def request_schema(path: str, method: str) -> str:
    """Return the pointer to the documented schema of one request body."""
    assert "requestBody" in OPENAPI["paths"][path][method.lower()]
    return (
        f"/paths/{_escaped(path)}/{method.lower()}/requestBody"
        "/content/application~1json/schema"
    )


def component(name: str) -> str:
    """Return the pointer to one of the named schemas."""
    assert name in SCHEMAS
    return f"/components/schemas/{name}"


async def test_every_reply_of_a_key_life_matches_its_schema(stack: Stack) -> None:
    """Create, list, show, update, rotate, mint, revoke, usage and errors all match."""
    new_ollama = OllamaIdentity().pub_line
    calls = [
        (
            "POST",
            "/admin/keys",
            "/admin/keys",
            {"name": "svc", "limits": {"concurrent": 2}},
        ),
        (
            "POST",
            "/admin/keys",
            "/admin/keys",
            {"name": "cli", "ollama_public_key": OllamaIdentity().pub_line},
        ),
        ("GET", "/admin/keys", "/admin/keys", None),
        ("GET", "/admin/keys/svc", "/admin/keys/{id}", None),
        (
            "PATCH",
            "/admin/keys/svc",
            "/admin/keys/{id}",
            {"note": "n", "models": ["x"]},
        ),
        ("POST", "/admin/keys/svc/rotate", "/admin/keys/{id}/rotate", {"grace": "1h"}),
        (
            "POST",
            "/admin/keys/cli/rotate",
            "/admin/keys/{id}/rotate",
            {"grace": 60, "ollama_public_key": new_ollama},
        ),
        (
            "POST",
            "/admin/keys",
            "/admin/keys",
            {"name": "human", "password": "a long password"},
        ),
        (
            "POST",
            "/admin/keys/human/passwd",
            "/admin/keys/{id}/passwd",
            {"password": "a longer password", "grace": "1h"},
        ),
        ("POST", "/admin/keys/svc/tokens", "/admin/keys/{id}/tokens", {"ttl": "5m"}),
        ("POST", "/admin/keys/svc/revoke", "/admin/keys/{id}/revoke", None),
        ("GET", "/admin/usage?by=key,model", "/admin/usage", None),
        ("GET", "/admin/keys/nobody", "/admin/keys/{id}", None),
        ("POST", "/admin/keys", "/admin/keys", {"name": "svc"}),
    ]
    stack.secrets.add("a long password", "a longer password")
    await stack.call(stack.admin_token, "POST", "/api/chat", CHAT)  # a usage row
    statuses = []
    for method, url, path, body in calls:
        status, data = await stack.api(method, url, body)
        statuses.append(status)
        schema = response_schema(path, method, status)
        # Exactly the documented fields, and every time in UTC with a Z.
        assert errors_of(data, schema, exact=True) == [], url
        assert [s for s in stamps(data) if not s.endswith("Z")] == [], url
        if body is not None and status < 400:
            assert errors_of(body, request_schema(path, method)) == [], url
    assert statuses[:7] == [201, 201, 200, 200, 200, 200, 200]
    assert statuses[7:] == [201, 200, 201, 200, 200, 404, 400]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "colour": "red"},
        {"name": "x", "scopes": ["root"]},
        {"name": "x", "limits": {"concurrent": -1}},
        {"name": "x", "password": "short"},
        {"scopes": ["inference"]},
    ],
    ids=["unknown-field", "scope", "limit", "password", "no-name"],
)
async def test_bodies_the_schema_refuses_the_api_refuses(stack: Stack, body) -> None:
    """A new-key body outside NewKey is a 400 from the API too."""
    assert errors_of(body, component("NewKey")) != []
    status, data = await stack.api("POST", "/admin/keys", body)
    assert status == 400
    assert errors_of(data, component("Error")) == []


@pytest.mark.parametrize(
    "body",
    [{}, {"hash": "x"}, {"disabled": "yes"}, {"limits": {"tokens_per_day": 1.5}}],
    ids=["empty", "unknown-field", "disabled", "limit"],
)
async def test_changes_the_schema_refuses_the_api_refuses(stack: Stack, body) -> None:
    """A change body outside KeyChanges is a 400 from the API too."""
    assert errors_of(body, component("KeyChanges")) != []
    status, _ = await stack.api("PATCH", "/admin/keys/alice", body)
    assert status == 400
