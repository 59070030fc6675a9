"""Helpers the command modules share: option types, output, the admin trail."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from authproxy.config.model import Config, admin_trail_file
from authproxy.errors import KeyStoreError
from authproxy.keys.backend import key_backend
from authproxy.keys.redisstore import RedisKeyStore
from authproxy.keys.store import KeyTable, StoreRef, read_store
from authproxy.metering.trail import cli_actor, record_action

AddOptions = Callable[[argparse.ArgumentParser], None]

# C0, DEL and C1 controls, plus the Unicode line separators and bidi controls
# that reorder what a terminal shows.
_CONTROL_RE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value: object) -> str:
    r"""Return ``str(value)`` with control characters escaped, for a terminal.

    Stored text (a key's note) and client text (a model name in the audit
    log) may carry ANSI escape sequences or carriage returns that would
    rewrite what the operator sees. They are shown as ``\x1b``, ``\r``,
    ``\u202e`` instead. ``--json`` output needs none of this: JSON escapes
    them itself.
    """
    return _CONTROL_RE.sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def split_list(value: str) -> list[str]:
    """Parse a comma-separated option value."""
    return [v.strip() for v in value.split(",") if v.strip()]


def read_public_key(source: str | None) -> str | None:
    """Read an ``id_ed25519.pub`` file named by an option (``-``: standard input).

    Raises:
        KeyStoreError: the file cannot be read.
    """
    if source is None:
        return None
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or "not UTF-8 text"
        raise KeyStoreError(
            f"--ollama-public-key: cannot read {source}: {reason}"
        ) from None


def store(config: Config) -> StoreRef:
    """Return the key store: its file, or Redis (``state.backend``)."""
    return key_backend(config).store


def store_exists(path: StoreRef) -> bool:
    """Tell whether the store holds a table yet (a file, or a Redis version).

    Raises:
        KeyStoreError: Redis cannot be reached.
    """
    if isinstance(path, Path):
        return path.exists()
    return not isinstance(path, RedisKeyStore) or path.version() is not None


def existing_store(config: Config) -> StoreRef:
    """Return the key store of a command that needs the store to exist.

    Without this, a command run from the wrong directory would read a missing
    store as an empty one and answer as if there were no keys.

    Raises:
        KeyStoreError: there is no file at the path (the message names it in
            full and says how to get one), or no store in Redis yet.
    """
    path = store(config)
    if isinstance(path, RedisKeyStore):
        if path.version() is None:
            raise KeyStoreError(
                "no key store in Redis yet (state.backend: redis): create a key "
                "with `authproxy keys create NAME` or `authproxy keys import FILE`"
            )
        return path
    if not isinstance(path, Path):
        return path
    if not path.exists():
        raise KeyStoreError(
            f"no key store at {path.absolute()}: create one with "
            "`authproxy keys create NAME`, or name yours with --config or --keys"
        )
    return path


def load_table(config: Config) -> KeyTable:
    """Read the key store, which must exist.

    Raises:
        KeyStoreError: the store is missing (see ``existing_store``), or it
            cannot be read or parsed.
    """
    return read_store(existing_store(config))


def announce_new_store(config: Config) -> None:
    """Say on stderr where a command that made the store first has put it."""
    path, trail = store(config), admin_trail_file(config)
    where = path.absolute() if isinstance(path, Path) else "Redis (state.backend)"
    print(
        f"authproxy: created a new key store at {printable(where)} "
        f"(admin trail: {printable(trail.absolute())})",
        file=sys.stderr,
    )


def log_action(config: Config, action: str, **fields: Any) -> None:
    """Record a CLI admin action in the admin trail."""
    record_action(
        admin_trail_file(config),
        actor=cli_actor(),
        action=action,
        source="cli",
        replica=config.server.replica,
        **fields,
    )


def print_result(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print JSON with ``--json``, else the human text (lines made printable)."""
    if args.json:
        print(json.dumps(data))
    else:
        print("\n".join(printable(line) for line in text.split("\n")))
