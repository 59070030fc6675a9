"""auth.minting: a key's JWTs never carry more rights than the key."""

from __future__ import annotations

from tests.support.admin import Stack
from tests.support.payloads import CHAT


async def test_key_jwt_works_with_at_most_the_keys_rights(stack: Stack, key) -> None:
    """A minted JWT authenticates on the proxy, narrowed to its scopes and models."""
    status, minted = await stack.api(
        "POST",
        "/admin/keys/alice/tokens",
        {"ttl": "15m", "scopes": ["inference"], "models": ["llama3.2"]},
    )
    assert status == 201
    jwt_token = minted["token"]
    assert minted["key_id"] == key.record.id
    assert await stack.call(jwt_token, "POST", "/api/chat", CHAT) == 200
    assert (
        await stack.call(jwt_token, "POST", "/api/chat", {**CHAT, "model": "qwen3"})
        == 403
    )
    assert await stack.call(jwt_token) == 403  # models:read not granted
    _, plain = await stack.api("POST", "/admin/keys", {"name": "plain"})
    status, data = await stack.api(
        "POST", f"/admin/keys/{plain['id']}/tokens", {"scopes": ["admin"]}
    )
    assert (status, data["error"]) == (400, "scopes: the key lacks 'admin'")
