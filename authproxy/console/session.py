"""Console sessions: what a signed-in browser holds, kept server side.

The cookie carries only a random 32-byte id. The store names a session by
the SHA-256 of that id, so a dump of the store (or of Redis) cannot be
replayed as a cookie. A session ends when unused for ``idle_timeout``, at
``max_age`` after sign-in, at the admin JWT's ``exp``, at sign-out, and when
its admin key stops being usable (``signin`` checks that on every request).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any, Final, Protocol

import redis.asyncio

from authproxy.config.model import Config
from authproxy.errors import KeyStoreUnavailableError
from authproxy.state.connection import RedisError, async_client

COOKIE: Final = "authproxy_console"
COOKIE_PATH: Final = "/admin/ui/"
ID_BYTES: Final = 32
# A memory store never holds more than this many sessions (oldest go first).
MAX_SESSIONS: Final = 10_000


@dataclass(slots=True, kw_only=True)
class Session:
    """One signed-in browser.

    Warning:
        ``csrf`` is the secret the forms' tokens derive from: never log it.
    """

    actor: str  # as the admin trail names it: a key name or jwt:<actor>
    key_id: str | None  # the admin key (or the key a key JWT is of); None: admin JWT
    created: float  # epoch seconds, on the admin app's clock
    seen: float
    csrf: str
    jwt_exp: float | None = None
    jwt_iat: float | None = None
    flash: str | None = None

    def expired(self, now: float, idle: float, max_age: float) -> bool:
        """Tell whether the session has ended by ``now`` (epoch seconds)."""
        if self.jwt_exp is not None and now >= self.jwt_exp:
            return True
        return now - self.seen >= idle or now - self.created >= max_age

    def to_json(self) -> str:
        """Serialise for the store."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Session | None:
        """Parse what ``to_json`` wrote; ``None`` if it is not a session."""
        try:
            data: Any = json.loads(text)
            return cls(**data) if isinstance(data, dict) else None
        except (ValueError, TypeError):
            return None


def new_session_id() -> str:
    """Return a fresh random session id (the cookie value)."""
    return secrets.token_urlsafe(ID_BYTES)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore(Protocol):
    """Where sessions live: this process, or Redis for every replica."""

    async def load(self, session_id: str) -> Session | None:
        """Return the session of ``session_id``, or ``None``."""

    async def save(self, session_id: str, session: Session, ttl: float) -> None:
        """Store (or refresh) ``session`` for ``ttl`` seconds."""

    async def delete(self, session_id: str) -> None:
        """Forget ``session_id`` (sign-out, expiry)."""

    async def close(self) -> None:
        """Release the store's connections."""


class MemorySessionStore:
    """Sessions in this process (lost at restart; ``state.backend: file``)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        """Start empty; hold at most ``limit`` sessions (the oldest go first)."""
        # Insertion order is age order: a refreshed session moves to the end.
        self._sessions: dict[str, str] = {}
        self._limit = limit

    async def load(self, session_id: str) -> Session | None:
        """Return the session of ``session_id``, or ``None``."""
        text = self._sessions.get(_digest(session_id))
        return None if text is None else Session.from_json(text)

    async def save(self, session_id: str, session: Session, ttl: float) -> None:
        """Store ``session``; expiry is checked on load (``Session.expired``)."""
        digest = _digest(session_id)
        self._sessions.pop(digest, None)
        self._sessions[digest] = session.to_json()
        while len(self._sessions) > self._limit:
            del self._sessions[next(iter(self._sessions))]

    async def delete(self, session_id: str) -> None:
        """Forget ``session_id``."""
        self._sessions.pop(_digest(session_id), None)

    async def close(self) -> None:
        """Drop every session."""
        self._sessions.clear()


class RedisSessionStore:
    """Sessions in Redis, so any replica serves a signed-in browser."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        """Use ``client``; names go under ``<prefix>console:session:``."""
        self.client = client
        self.prefix = f"{prefix}console:session:"

    async def load(self, session_id: str) -> Session | None:
        """Return the session of ``session_id``, or ``None``.

        Raises:
            KeyStoreUnavailableError: Redis cannot be reached (answered 503).
        """
        try:
            text = await self.client.get(self.prefix + _digest(session_id))
        except (RedisError, OSError) as err:
            raise _unavailable(err) from None
        return None if text is None else Session.from_json(str(text))

    async def save(self, session_id: str, session: Session, ttl: float) -> None:
        """Store ``session``; Redis drops it after ``ttl`` seconds unused.

        Raises:
            KeyStoreUnavailableError: Redis cannot be reached.
        """
        try:
            await self.client.set(
                self.prefix + _digest(session_id),
                session.to_json(),
                px=max(1, int(ttl * 1000)),
            )
        except (RedisError, OSError) as err:
            raise _unavailable(err) from None

    async def delete(self, session_id: str) -> None:
        """Forget ``session_id``.

        Raises:
            KeyStoreUnavailableError: Redis cannot be reached.
        """
        try:
            await self.client.delete(self.prefix + _digest(session_id))
        except (RedisError, OSError) as err:
            raise _unavailable(err) from None

    async def close(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


def _unavailable(err: BaseException) -> KeyStoreUnavailableError:
    # The message must not carry the URL (it may name a host the admin hides).
    del err
    return KeyStoreUnavailableError("session store in Redis unavailable")


def session_store(config: Config) -> SessionStore:
    """Return the store ``state.backend`` asks for.

    Raises:
        KeyStoreError: the Redis settings are unusable (password variable unset).
    """
    if config.state.backend == "redis":
        return RedisSessionStore(async_client(config.state), config.state.prefix)
    return MemorySessionStore()
