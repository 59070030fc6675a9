"""The key store in Redis: records, JWT signing keys, versioned atomic writes.

Layout (under ``state.prefix``): a hash of records (key id -> JSON), a
version counter whose presence marks an initialised store, the signing keys
as JSON, and a stream with one entry per change (``v``, ``op``, ``ids``) that
every replica follows (``keys.feed``). One Lua script applies a change: it
checks the version the change was computed from, writes, counts the version up
and appends to the stream, all or nothing; a conflicting writer retries.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

import redis

from authproxy.errors import KeyStoreError
from authproxy.keys.codec import record_from_data, record_to_data
from authproxy.keys.signing import KEEP_PREVIOUS, SECRET_BYTES, SigningKey, SigningKeys
from authproxy.keys.store import KeyTable
from authproxy.state.connection import StateNames, unreachable
from authproxy.times import format_timestamp, parse_timestamp

T = TypeVar("T")

FEED_LENGTH: Final = 10_000  # stream entries kept; a replica further behind reloads
MAX_ATTEMPTS: Final = 50

# KEYS: records, version, feed, signing.
# ARGV: expected version ("" for none), feed length, op, signing JSON ("" to
# keep), number of records to put, then id/JSON pairs, then ids to delete.
COMMIT: Final = """
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[1] then return false end
local ids = {}
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  ids[#ids + 1] = ARGV[i]
  i = i + 2
end
while i <= #ARGV do
  redis.call('HDEL', KEYS[1], ARGV[i])
  ids[#ids + 1] = ARGV[i]
  i = i + 1
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[4], ARGV[4]) end
local v = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*',
  'v', v, 'op', ARGV[3], 'ids', table.concat(ids, ','))
return v
"""


def encode_record(record: Any) -> str:
    """Return a record as the JSON stored in the records hash."""
    return json.dumps(record_to_data(record), separators=(",", ":"))


def decode_record(key_id: str, text: str) -> Any:
    """Parse one stored record.

    Raises:
        KeyStoreError: not a valid record (the message never quotes it).
    """
    try:
        record = record_from_data(json.loads(text))
    except (ValueError, TypeError, KeyStoreError) as err:
        detail = err if isinstance(err, KeyStoreError) else "not JSON"
        raise KeyStoreError(f"key store in Redis: record {key_id}: {detail}") from None
    if record.id != key_id:
        raise KeyStoreError(f"key store in Redis: record {key_id}: id mismatch")
    return record


def table_from_hash(records: Mapping[str, str]) -> KeyTable:
    """Build the table from the records hash, oldest key first.

    Raises:
        KeyStoreError: a record is invalid or two collide.
    """
    parsed = sorted(
        (decode_record(k, v) for k, v in records.items()),
        key=lambda r: (r.created_at, r.id),
    )
    table = KeyTable()
    for record in parsed:
        table = table.add(record)
    return table


def encode_signing(keys: tuple[SigningKey, ...]) -> str:
    """Return the signing keys as stored JSON."""
    return json.dumps(
        [
            {
                "kid": k.kid,
                "secret": base64.urlsafe_b64encode(k.secret).decode(),
                "created_at": format_timestamp(k.created_at) if k.created_at else None,
            }
            for k in keys
        ]
    )


def decode_signing(text: str) -> SigningKeys:
    """Parse the stored signing keys.

    Raises:
        KeyStoreError: not a valid list of keys.
    """
    try:
        keys = tuple(
            SigningKey(
                str(item["kid"]),
                base64.urlsafe_b64decode(item["secret"]),
                parse_timestamp(item["created_at"]) if item["created_at"] else None,
            )
            for item in json.loads(text)
        )
    except (ValueError, KeyError, TypeError):
        raise KeyStoreError("key store in Redis: invalid JWT signing keys") from None
    if not keys:
        raise KeyStoreError("key store in Redis: no JWT signing keys")
    return SigningKeys(keys)


def new_signing_key(now: datetime | None) -> SigningKey:
    """Return a fresh HS256 key; its kid is derived from the secret."""
    secret = secrets.token_bytes(SECRET_BYTES)
    return SigningKey(hashlib.sha256(secret).hexdigest()[:12], secret, now)


class RedisKeyStore:
    """The store in Redis, through the blocking client (CLI and executor threads)."""

    def __init__(self, client: redis.Redis, names: StateNames) -> None:
        self.client = client
        self.names = names
        self._commit = client.register_script(COMMIT)

    def _snapshot(self) -> tuple[str, KeyTable, str | None]:
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.get(self.names.version)
                pipe.hgetall(self.names.records)
                pipe.get(self.names.signing)
                version, records, signing = pipe.execute()
        except (redis.RedisError, OSError) as err:
            raise unreachable(err) from None
        return version or "", table_from_hash(records), signing

    def version(self) -> int | None:
        """Return the store's version, ``None`` while it was never written.

        Raises:
            KeyStoreError: Redis cannot be reached.
        """
        version = self._snapshot()[0]
        return int(version) if version else None

    def read(self) -> KeyTable:
        """Return the whole table (empty for a store never written).

        Raises:
            KeyStoreError: Redis cannot be reached or holds an invalid record.
        """
        return self._snapshot()[1]

    def update(self, change: Callable[[KeyTable], tuple[KeyTable, T]]) -> T:
        """Apply ``change`` to the current table, atomically; retry on conflict.

        Raises:
            KeyStoreError: Redis cannot be reached, or ``change`` refused.

        Returns:
            What ``change`` returned beside the new table.
        """
        for _ in range(MAX_ATTEMPTS):
            version, table, _signing = self._snapshot()
            new, result = change(table)
            if new is table:
                return result
            old = table.by_id
            puts = [r for r in new.records if old.get(r.id) != r]
            dels = [i for i in old if i not in new.by_id]
            if self._apply(version, "keys", puts, dels) is not None:
                return result
        raise KeyStoreError("key store in Redis: too many concurrent writes; retry")

    def load_signing(self) -> SigningKeys:
        """Return the JWT signing keys, creating the first one on first use.

        Raises:
            KeyStoreError: Redis cannot be reached or holds invalid keys.
        """
        for _ in range(MAX_ATTEMPTS):
            version, _table, signing = self._snapshot()
            if signing:
                return decode_signing(signing)
            keys = (new_signing_key(None),)
            if self._apply(version, "signing", [], [], encode_signing(keys)):
                return SigningKeys(keys)
        raise KeyStoreError("key store in Redis: too many concurrent writes; retry")

    def rotate_signing(self, now: datetime) -> SigningKeys:
        """Put a new signing key first, keeping the last few to verify with.

        Raises:
            KeyStoreError: Redis cannot be reached.
        """
        for _ in range(MAX_ATTEMPTS):
            version, _table, signing = self._snapshot()
            old = decode_signing(signing).keys if signing else ()
            keys = (new_signing_key(now), *old[:KEEP_PREVIOUS])
            if self._apply(version, "signing", [], [], encode_signing(keys)):
                return SigningKeys(keys)
        raise KeyStoreError("key store in Redis: too many concurrent writes; retry")

    def _apply(
        self,
        version: str,
        op: str,
        puts: list[Any],
        dels: list[str],
        signing: str = "",
    ) -> int | None:
        """Run the commit script; ``None`` when another writer came first."""
        args: list[str | int] = [version, FEED_LENGTH, op, signing, len(puts)]
        for record in puts:
            args += [record.id, encode_record(record)]
        args += dels
        names = self.names
        keys = [names.records, names.version, names.feed, names.signing]
        try:
            done = self._commit(keys=keys, args=args)
        except (redis.RedisError, OSError) as err:
            raise unreachable(err) from None
        return int(done) if done is not None else None
