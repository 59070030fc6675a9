"""The key store: tokens, the YAML file of records, atomic locked writes.

Only argon2id hashes are stored. A token is ``ap_<id>_<secret>``: the public
id names its record, so verifying a token costs exactly one argon2 verify.

Format version 2 ends with ``records: <number of keys>`` as its last top-level
key, a mark of completeness: a file cut short (still valid YAML, fewer keys or
fields) lacks it or disagrees with it, and is refused. Version 1 files, which
earlier releases wrote without the mark, still load; any write upgrades them.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import yaml
from argon2 import PasswordHasher, Type

from authproxy.config.model import Argon2Config
from authproxy.errors import KeyStoreError
from authproxy.files import store_lock, write_file_atomically
from authproxy.keys.codec import record_from_data, record_to_data
from authproxy.keys.record import (
    TOKEN_RE,
    KeyRecord,
    validate_name,
)

__all__ = [
    "TOKEN_RE",
    "KeyRecord",
    "KeySource",
    "KeyTable",
    "StoreRef",
    "validate_name",
]

T = TypeVar("T")

TOKEN_PREFIX: Final = "ap"  # noqa: S105 - a public prefix, not a secret
ID_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
ID_LENGTH: Final = 12
SECRET_BYTES: Final = 32
STORE_VERSION: Final = 2
LEGACY_VERSION: Final = 1  # no completeness mark
_HAND_EDIT_HINT: Final = "see keys/README.md, 'Editing by hand'"


@dataclass(frozen=True, slots=True)
class KeyTable:
    """An immutable snapshot of the store, indexed by id, name and public key.

    ``by_public_key`` holds every ed25519 key an ollama key was ever given and
    still lists (the current one and those within a rotation's grace), so a
    signature finds its record with one lookup.
    """

    records: tuple[KeyRecord, ...] = ()
    by_id: Mapping[str, KeyRecord] = field(init=False, repr=False)
    by_name: Mapping[str, KeyRecord] = field(init=False, repr=False)
    by_public_key: Mapping[str, KeyRecord] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {r.id: r for r in self.records})
        object.__setattr__(self, "by_name", {r.name: r for r in self.records})
        keys = {
            blob: r
            for r in self.records
            for blob in (r.public_key, *(p.public_key for p in r.previous))
            if blob
        }
        object.__setattr__(self, "by_public_key", keys)

    def find(self, ref: str) -> KeyRecord | None:
        """Return the record whose id or name is ``ref``."""
        return self.by_id.get(ref) or self.by_name.get(ref)

    def replace(self, record: KeyRecord) -> KeyTable:
        """Return a table with the record of the same id replaced."""
        return KeyTable(tuple(record if r.id == record.id else r for r in self.records))

    def add(self, record: KeyRecord) -> KeyTable:
        """Return a table with ``record`` appended.

        Raises:
            KeyStoreError: the id, the name or the public key is already taken.
        """
        if record.name in self.by_name or record.name in self.by_id:
            raise KeyStoreError(f"a key named {record.name!r} already exists")
        if record.id in self.by_id or record.id in self.by_name:
            raise KeyStoreError("key id collision; try again")
        if record.public_key and record.public_key in self.by_public_key:
            raise KeyStoreError("this public key already belongs to a key")
        return KeyTable((*self.records, record))


class KeySource(Protocol):
    """A key store that is not a file (Redis: ``keys.redisstore``)."""

    def read(self) -> KeyTable:
        """Return the whole table.

        Raises:
            KeyStoreError: the store cannot be read.
        """

    def update(self, change: Callable[[KeyTable], tuple[KeyTable, T]]) -> T:
        """Apply ``change`` atomically; return its result.

        Raises:
            KeyStoreError: the store cannot be used, or ``change`` refused.
        """


# Where the life-cycle functions read and write: the YAML file, or a source.
StoreRef = Path | KeySource


def make_hasher(params: Argon2Config) -> PasswordHasher:
    """Return an argon2id hasher with the configured parameters."""
    return PasswordHasher(
        time_cost=params.time_cost,
        memory_cost=params.memory_cost,
        parallelism=params.parallelism,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def new_key_id() -> str:
    """Return a fresh random public key id."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


def new_secret() -> str:
    """Return a fresh secret carrying 256 bits from ``secrets``."""
    return secrets.token_urlsafe(SECRET_BYTES)


def format_token(key_id: str, secret: str) -> str:
    """Return the token a client presents for ``key_id``."""
    return f"{TOKEN_PREFIX}_{key_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """Split a token into ``(key_id, secret)``, or ``None`` if malformed."""
    match = TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    return match.group(1), match.group(2)


@dataclass(frozen=True, slots=True)
class StoreFile:
    """A parsed store file: its table and the format version it was written in."""

    table: KeyTable
    version: int = STORE_VERSION


def parse_store(text: str, source: str) -> KeyTable:
    """Parse the YAML text of a key store.

    Raises:
        KeyStoreError: see ``parse_store_file``.

    Returns:
        The table of records.
    """
    return parse_store_file(text, source).table


def parse_store_file(text: str, source: str) -> StoreFile:
    """Parse the YAML text of a key store, checking its completeness mark.

    Args:
        text: the file contents.
        source: the file name, for error messages.

    Raises:
        KeyStoreError: the text is not a valid store, is empty, or is a
            version 2 store without a matching final ``records`` count (cut
            short). The message never quotes file contents, which hold hashes.

    Returns:
        The table of records and the format version.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KeyStoreError(f"{source}: not valid YAML{where}") from None
    if data is None:
        raise KeyStoreError(
            f"{source}: the file is empty (a write cut short?); restore it, "
            "or delete it to start a new store"
        )
    if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
        raise KeyStoreError(f"{source}: expected a mapping with a 'keys' list")
    version = data.get("version", LEGACY_VERSION)
    if version not in (LEGACY_VERSION, STORE_VERSION) or isinstance(version, bool):
        raise KeyStoreError(f"{source}: unsupported store version")
    items = data.get("keys") or []
    _check_mark(data, len(items), version, source)
    table = KeyTable()
    for index, item in enumerate(items):
        try:
            record = record_from_data(item)
            table = table.add(record)
        except (KeyStoreError, TypeError, ValueError) as err:
            raise KeyStoreError(f"{source}: keys[{index}]: {err}") from None
    return StoreFile(table, version)


def _check_mark(data: dict[str, Any], keys: int, version: int, source: str) -> None:
    """Check the final ``records`` count (required from version 2 on).

    Raises:
        KeyStoreError: the mark is missing, not last, or disagrees.
    """
    if "records" not in data:
        if version == LEGACY_VERSION:
            return
        raise KeyStoreError(
            f"{source}: incomplete: the final 'records' count is missing "
            f"(a write cut short?); {_HAND_EDIT_HINT}"
        )
    count = data["records"]
    if list(data)[-1] != "records":
        raise KeyStoreError(
            f"{source}: 'records' must be the last top-level key; {_HAND_EDIT_HINT}"
        )
    if not isinstance(count, int) or isinstance(count, bool) or count != keys:
        raise KeyStoreError(
            f"{source}: incomplete: 'records' does not match the number of keys "
            f"({keys}) (a write cut short?); {_HAND_EDIT_HINT}"
        )


def dump_store(table: KeyTable) -> str:
    """Serialise a table to the YAML store format, ending with its ``records`` mark."""
    records = [record_to_data(r) for r in table.records]
    data = {"version": STORE_VERSION, "keys": records, "records": len(records)}
    header = "# authproxy key store: argon2id hashes only. Use `authproxy keys`.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def read_store(path: StoreRef) -> KeyTable:
    """Read and parse the store at ``path`` (or read the source).

    Raises:
        KeyStoreError: the file cannot be read or parsed.
    """
    if not isinstance(path, Path):
        return path.read()
    return load_store(path).table


def read_or_empty(path: StoreRef) -> KeyTable:
    """Read the store; a file that does not exist yet is an empty table.

    Raises:
        KeyStoreError: the store cannot be read or parsed.
    """
    if isinstance(path, Path) and not path.exists():
        return KeyTable()
    return read_store(path)


def load_store(path: Path) -> StoreFile:
    """Read and parse the store at ``path``, with its format version.

    Raises:
        KeyStoreError: the file cannot be read or parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise KeyStoreError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise KeyStoreError(f"{path}: not UTF-8 text") from None
    return parse_store_file(text, str(path))


def write_store(path: Path, table: KeyTable) -> None:
    """Atomically replace the store with ``table``.

    Raises:
        KeyStoreError: the directory is not writable.
    """
    write_file_atomically(path, dump_store(table).encode("utf-8"))


def update_store(path: StoreRef, change: Callable[[KeyTable], tuple[KeyTable, T]]) -> T:
    """Read, change and atomically rewrite the store under its lock.

    A source (Redis) applies the change in its own atomic way.

    A missing file counts as an empty store.

    Raises:
        KeyStoreError: reading, parsing or writing failed, or ``change`` refused.

    Returns:
        Whatever ``change`` returned beside the new table.
    """
    if not isinstance(path, Path):
        return path.update(change)
    with store_lock(path):
        table = read_store(path) if path.exists() else KeyTable()
        new_table, result = change(table)
        if new_table is not table:
            write_store(path, new_table)
        return result
