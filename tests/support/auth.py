"""Credentials as headers, the one 401 every failure gets, and slow hashes."""

from __future__ import annotations

import base64
import dataclasses
from http import HTTPStatus
from typing import Any, Final

from argon2 import PasswordHasher

from authproxy.auth.verify import Verifier
from authproxy.keys.store import format_token
from tests.support.fake_ollama.server import FakeOllama

CHALLENGES: Final = [
    'Basic realm="authproxy", charset="UTF-8"',
    'Bearer realm="authproxy"',
]
# A well-formed token of a key id no store holds.
UNKNOWN_TOKEN: Final = format_token("aaaaaaaaaaaa", "x" * 43)
# Slow enough that a check is still running while a test looks at it.
SLOW_HASHER: Final = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1)


def bearer_auth(token: str | None) -> dict[str, str]:
    """Return the ``Authorization: Bearer`` header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def basic_value(*parts: str) -> str:
    """Return ``Basic`` and the base64 of ``parts`` joined by colons."""
    return "Basic " + base64.b64encode(":".join(parts).encode()).decode()


def basic_auth(user: str, password: str) -> dict[str, str]:
    """Return the ``Authorization: Basic`` header for ``user:password``."""
    return {"Authorization": basic_value(user, password)}


async def assert_rejected(
    proxy: Any,
    fake: FakeOllama,
    headers: Any,
    path: str = "/api/tags",
    error: str = "unauthorized",
) -> None:
    """Assert the request gets a 401 (both challenges) and reaches nothing.

    ``error`` is the one answer every bad credential gets, unless the test
    expects a proved key's state (``key revoked``).
    """
    resp = await proxy.get(path, headers=headers)
    assert resp.status == HTTPStatus.UNAUTHORIZED
    assert await resp.read() == b'{"error":"%s"}' % error.encode()
    assert resp.headers.getall("WWW-Authenticate") == CHALLENGES
    assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert fake.received == []


def slow_hash(verifier: Verifier, key_id: str, secret: str) -> None:
    """Re-hash a key expensively in the running verifier (its stored hash is cheap).

    The record loses its fingerprint, so even a wrong secret costs an argon2 check.
    """
    record = verifier.table.by_id[key_id]
    slow_record = dataclasses.replace(
        record, hash=SLOW_HASHER.hash(secret), fingerprint=None
    )
    verifier.set_table(verifier.table.replace(slow_record))
