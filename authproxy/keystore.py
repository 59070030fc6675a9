"""Hashed key records: tokens, the YAML store, atomic locked writes.

Only argon2id hashes are stored. A token is ``ap_<id>_<secret>``: the public
id names its record, so verifying a token costs exactly one argon2 verify.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import yaml
from argon2 import PasswordHasher, Type

from authproxy.config import Argon2Config
from authproxy.errors import KeyStoreError
from authproxy.times import format_timestamp, parse_timestamp

T = TypeVar("T")

TOKEN_PREFIX: Final = "ap"  # noqa: S105 - a public prefix, not a secret
ID_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
ID_LENGTH: Final = 12
SECRET_BYTES: Final = 32
TOKEN_RE: Final = re.compile(r"ap_([a-z2-7]{12})_([A-Za-z0-9_-]{43})")
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
STORE_VERSION: Final = 1

KeyKind = Literal["token", "password"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """One key as stored: public metadata plus the argon2id hash of its secret."""

    id: str
    name: str
    hash: str
    kind: KeyKind = "token"
    created_at: datetime
    expires_at: datetime | None = None
    disabled: bool = False
    revoked_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        """Tell whether the key may authenticate at ``now``."""
        if self.disabled:
            return False
        return self.expires_at is None or now < self.expires_at

    def public(self) -> dict[str, Any]:
        """Return the record without its hash, for listings."""
        data = _record_to_data(self)
        del data["hash"]
        return data


@dataclass(frozen=True, slots=True)
class KeyTable:
    """An immutable snapshot of the store, indexed by id and by name."""

    records: tuple[KeyRecord, ...] = ()
    by_id: Mapping[str, KeyRecord] = field(init=False, repr=False)
    by_name: Mapping[str, KeyRecord] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {r.id: r for r in self.records})
        object.__setattr__(self, "by_name", {r.name: r for r in self.records})

    def find(self, ref: str) -> KeyRecord | None:
        """Return the record whose id or name is ``ref``."""
        return self.by_id.get(ref) or self.by_name.get(ref)

    def replace(self, record: KeyRecord) -> KeyTable:
        """Return a table with the record of the same id replaced."""
        return KeyTable(tuple(record if r.id == record.id else r for r in self.records))

    def add(self, record: KeyRecord) -> KeyTable:
        """Return a table with ``record`` appended.

        Raises:
            KeyStoreError: the id or the name is already taken.
        """
        if record.name in self.by_name or record.name in self.by_id:
            raise KeyStoreError(f"a key named {record.name!r} already exists")
        if record.id in self.by_id or record.id in self.by_name:
            raise KeyStoreError("key id collision; try again")
        return KeyTable((*self.records, record))


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


def validate_name(name: str) -> str:
    """Check a key name.

    Raises:
        KeyStoreError: the name is empty, too long or has unsafe characters.
    """
    if not NAME_RE.fullmatch(name) or TOKEN_RE.fullmatch(name):
        raise KeyStoreError(
            f"invalid key name {name!r}: use 1-64 of A-Z a-z 0-9 . _ @ -, "
            "starting with a letter or digit"
        )
    return name


def parse_store(text: str, source: str) -> KeyTable:
    """Parse the YAML text of a key store.

    Args:
        text: the file contents.
        source: the file name, for error messages.

    Raises:
        KeyStoreError: the text is not a valid store. The message never
            quotes file contents, which hold hashes.

    Returns:
        The table of records.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KeyStoreError(f"{source}: not valid YAML{where}") from None
    if data is None:
        return KeyTable()
    if not isinstance(data, dict) or not isinstance(data.get("keys", []), list):
        raise KeyStoreError(f"{source}: expected a mapping with a 'keys' list")
    if data.get("version", STORE_VERSION) != STORE_VERSION:
        raise KeyStoreError(f"{source}: unsupported store version")
    table = KeyTable()
    for index, item in enumerate(data.get("keys") or []):
        try:
            record = _record_from_data(item)
            table = table.add(record)
        except (KeyStoreError, TypeError, ValueError) as err:
            raise KeyStoreError(f"{source}: keys[{index}]: {err}") from None
    return table


def dump_store(table: KeyTable) -> str:
    """Serialise a table to the YAML store format."""
    records = [_record_to_data(r) for r in table.records]
    data = {"version": STORE_VERSION, "keys": records}
    header = "# authproxy key store: argon2id hashes only. Use `authproxy keys`.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def read_store(path: Path) -> KeyTable:
    """Read and parse the store at ``path``.

    Raises:
        KeyStoreError: the file cannot be read or parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise KeyStoreError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise KeyStoreError(f"{path}: not UTF-8 text") from None
    return parse_store(text, str(path))


def write_store(path: Path, table: KeyTable) -> None:
    """Atomically replace the store: temp file, one write, fsync, rename, mode 0600.

    Raises:
        KeyStoreError: the directory is not writable.
    """
    data = dump_store(table).encode("utf-8")
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise KeyStoreError(f"{path}: cannot write: {err.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise KeyStoreError(f"{path}: cannot write: {err.strerror}") from None


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<store>.lock`` so writers never lose updates.

    Raises:
        KeyStoreError: the lock file cannot be created.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise KeyStoreError(f"{lock_path}: cannot lock: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_store(path: Path, change: Callable[[KeyTable], tuple[KeyTable, T]]) -> T:
    """Read, change and atomically rewrite the store under its lock.

    A missing file counts as an empty store.

    Raises:
        KeyStoreError: reading, parsing or writing failed, or ``change`` refused.

    Returns:
        Whatever ``change`` returned beside the new table.
    """
    with store_lock(path):
        table = read_store(path) if path.exists() else KeyTable()
        new_table, result = change(table)
        if new_table is not table:
            write_store(path, new_table)
        return result


def _record_to_data(record: KeyRecord) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for fld in dataclasses.fields(record):
        value = getattr(record, fld.name)
        if isinstance(value, datetime):
            value = format_timestamp(value)
        data[fld.name] = value
    return data


_REQUIRED: Final = ("id", "name", "hash", "created_at")
_TIMES: Final = ("created_at", "expires_at", "revoked_at")


def _read_time(key: str, value: Any) -> datetime:
    # Hand-edited YAML may hold unquoted dates and times.
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str):
        raise KeyStoreError(f"invalid {key!r}")
    return parse_timestamp(value)


def _record_from_data(item: Any) -> KeyRecord:
    if not isinstance(item, dict):
        raise KeyStoreError("expected a mapping")
    known = {f.name for f in dataclasses.fields(KeyRecord)}
    for key in item:
        if key not in known:
            raise KeyStoreError(f"unknown field {key!r}")
    for key in _REQUIRED:
        if not isinstance(item.get(key), str | date):
            raise KeyStoreError(f"missing or invalid {key!r}")
    values = dict(item)
    for key in _TIMES:
        if values.get(key) is not None:
            values[key] = _read_time(key, values[key])
    if not re.fullmatch(r"[a-z2-7]{12}", values["id"]):
        raise KeyStoreError("invalid 'id'")
    validate_name(values["name"])
    if not values["hash"].startswith("$argon2"):
        raise KeyStoreError("'hash' is not an argon2 hash")
    if values.get("kind", "token") not in {"token", "password"}:
        raise KeyStoreError("'kind' must be token or password")
    if not isinstance(values.get("disabled", False), bool):
        raise KeyStoreError("'disabled' must be true or false")
    return KeyRecord(**values)
