"""Helpers the command modules share: option types, output, the admin trail."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from authproxy.config.model import Config
from authproxy.errors import KeyStoreError
from authproxy.keys.backend import key_backend
from authproxy.keys.store import StoreRef
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


def log_action(config: Config, action: str, **fields: Any) -> None:
    """Record a CLI admin action in the admin trail."""
    record_action(
        Path(config.audit.admin_file),
        actor=cli_actor(),
        action=action,
        source="cli",
        **fields,
    )


def print_result(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print JSON with ``--json``, else the human text (lines made printable)."""
    if args.json:
        print(json.dumps(data))
    else:
        print("\n".join(printable(line) for line in text.split("\n")))
