"""proxy.listing: model listings rewritten for keys with an allow-list."""

from __future__ import annotations

import json

import pytest

from tests.support.admin import Stack


@pytest.mark.parametrize(
    ("path", "field", "name_key"),
    [
        ("/api/tags", "models", "name"),
        ("/api/ps", "models", "name"),
        ("/v1/models", "data", "id"),
    ],
)
async def test_listings_are_filtered(stack: Stack, path, field, name_key) -> None:
    """The three listings show only allowed models (the only rewritten responses)."""
    _, created = await stack.api(
        "POST", "/admin/keys", {"name": "dash", "models": ["llama3.2"]}
    )
    resp = await stack.proxy.get(
        path, headers={"Authorization": f"Bearer {created['token']}"}
    )
    body = await resp.read()
    assert resp.status == 200
    assert [m[name_key] for m in json.loads(body)[field]] == ["llama3.2:latest"]
    assert resp.headers["Content-Length"] == str(len(body))
    _, everything = await stack.api("POST", "/admin/keys", {"name": "all-models"})
    resp = await stack.proxy.get(
        path, headers={"Authorization": f"Bearer {everything['token']}"}
    )
    assert len(json.loads(await resp.read())[field]) >= 1
