"""admin.idempotency: a retried action with the same key gets the same reply."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from pathlib import Path

from authproxy.keys.store import read_store
from tests.support.admin import Stack


async def test_rotate_is_idempotent(stack: Stack, key, keys_path: Path) -> None:
    """A retry with the same Idempotency-Key returns the same token, rotating once."""
    headers = {"Idempotency-Key": "retry-1"}
    first = await stack.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "1h"}, headers=headers
    )
    second = await stack.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "1h"}, headers=headers
    )
    assert first == second
    assert len(read_store(keys_path).by_name["alice"].previous) == 1
    status, data = await stack.api(
        "POST", "/admin/keys/alice/rotate", {"grace": "2h"}, headers=headers
    )
    assert (status, data) == (
        409,
        {"error": "Idempotency-Key reused with another request"},
    )
    third = await stack.api(
        "POST",
        "/admin/keys/alice/rotate",
        {"grace": "1h"},
        headers={"Idempotency-Key": "retry-2"},
    )
    assert third[1]["token"] != first[1]["token"]


async def test_idempotency_key_length_is_bounded(stack: Stack) -> None:
    """An Idempotency-Key past the documented 200 characters is a 400, not stored."""
    resp = await stack.admin.post(
        "/admin/keys",
        json={"name": "long-idem"},
        headers={
            "Authorization": f"Bearer {stack.admin_token}",
            "Idempotency-Key": "k" * 201,
        },
    )
    assert resp.status == HTTPStatus.BAD_REQUEST
    assert await resp.json() == {"error": "Idempotency-Key: at most 200 characters"}
    status, _ = await stack.api("GET", "/admin/keys/long-idem")
    assert status == HTTPStatus.NOT_FOUND


async def test_identical_creates_at_once_make_one_key(
    stack: Stack, keys_path: Path
) -> None:
    """Two identical creates sent at once run once: the second waits and replays."""
    headers = {"Idempotency-Key": "at-once"}
    one, two = await asyncio.gather(
        stack.api("POST", "/admin/keys", {"name": "twice"}, headers=headers),
        stack.api("POST", "/admin/keys", {"name": "twice"}, headers=headers),
    )
    assert one[0] == HTTPStatus.CREATED
    assert one == two
    assert [r.name for r in read_store(keys_path).records].count("twice") == 1


async def test_a_failed_try_can_be_retried(stack: Stack) -> None:
    """A create refused for its body gives its claim back: a retry is answered anew."""
    headers = {"Idempotency-Key": "fix-and-retry"}
    status, _ = await stack.api(
        "POST", "/admin/keys", {"name": "x", "scopes": ["nope"]}, headers=headers
    )
    assert status == HTTPStatus.BAD_REQUEST
    status, _ = await stack.api(
        "POST", "/admin/keys", {"name": "x", "scopes": ["nope"]}, headers=headers
    )
    assert status == HTTPStatus.BAD_REQUEST
