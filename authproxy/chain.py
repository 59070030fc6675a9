"""The audit log's hash chain: seal records into lines, read the tail, verify files.

Each line is one compact JSON object whose last two fields are ``prev_hash``
(the ``hash`` of the record before it) and ``hash`` (SHA-256 of the line's
bytes with the ``hash`` field removed). ``seq`` counts records along the chain,
which continues across restarts and rotations, so an edited, deleted or
reordered line breaks it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

GENESIS: Final = "0" * 64
_SUFFIX_LEN: Final = len(',"hash":"') + 64 + len('"}')
_SUFFIX_RE: Final = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where the chain stands: the last record's sequence number and hash."""

    seq: int = 0
    hash: str = GENESIS


def seal(record: dict[str, Any], state: ChainState) -> tuple[bytes, ChainState]:
    """Add ``seq``, ``prev_hash`` and ``hash`` to a record; return its line.

    Returns:
        The line (ending in a newline) and the chain state after it.
    """
    seq = state.seq + 1
    body = orjson.dumps({**record, "seq": seq, "prev_hash": state.hash})
    digest = hashlib.sha256(body).hexdigest()
    line = body[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n'
    return line, ChainState(seq, digest)


class ChainError(ValueError):
    """A line that breaks the chain; the message says which and why."""


def check_line(
    line: bytes, expected: ChainState | None
) -> tuple[dict[str, Any], ChainState]:
    """Verify one line (without its newline) against the chain so far.

    Args:
        line: the raw line.
        expected: the state after the previous line, or ``None`` for the
            first line seen (any predecessor is accepted).

    Raises:
        ChainError: the line is not JSON, was edited, or does not follow.

    Returns:
        The parsed record and the new chain state.
    """
    match = _SUFFIX_RE.search(line)
    if match is None:
        raise ChainError("not a sealed audit record (no trailing hash)")
    body = line[:-_SUFFIX_LEN] + b"}"
    digest = match.group(1).decode("ascii")
    if hashlib.sha256(body).hexdigest() != digest:
        raise ChainError("edited: its hash does not match its content")
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ChainError("not valid JSON") from None
    seq, prev = record.get("seq"), record.get("prev_hash")
    if not isinstance(seq, int) or not isinstance(prev, str):
        raise ChainError("missing seq or prev_hash")
    if expected is not None:
        if seq != expected.seq + 1:
            raise ChainError(f"missing records: seq {seq} follows seq {expected.seq}")
        if prev != expected.hash:
            raise ChainError("prev_hash does not match the previous record")
    return record, ChainState(seq, digest)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of verifying files in order."""

    records: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Tell whether every line verified."""
        return self.error is None


def verify_files(paths: Iterable[Path]) -> VerifyReport:
    """Verify files, oldest first, as one chain.

    The first record of the first file may follow anything (older files may
    have been deleted); every later record must follow its predecessor.
    """
    state: ChainState | None = None
    count = 0
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            return VerifyReport(count, f"{path}: cannot read: {err.strerror}")
        lines = data.split(b"\n")
        if lines[-1]:
            return VerifyReport(count, f"{path}:{len(lines)}: torn last line")
        for number, line in enumerate(lines[:-1], start=1):
            try:
                _, state = check_line(line, state)
            except ChainError as err:
                return VerifyReport(count, f"{path}:{number}: {err}")
            count += 1
    return VerifyReport(count)


def read_last_line(path: Path) -> bytes | None:
    """Return the last complete line of a file, or ``None`` if it has none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        end = os.lseek(fd, 0, os.SEEK_END)
        pos, tail = end, b""
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            os.lseek(fd, pos, os.SEEK_SET)
            tail = os.read(fd, step) + tail
            complete = tail[: tail.rfind(b"\n") + 1] if b"\n" in tail else b""
            if complete.count(b"\n") >= 2 or (pos == 0 and complete):
                return complete[:-1].rsplit(b"\n", 1)[-1]
        return None
    finally:
        os.close(fd)


def tail_state(path: Path) -> ChainState | None:
    """Return the chain state after the last line of ``path``, if valid."""
    line = read_last_line(path)
    if line is None:
        return None
    try:
        _, state = check_line(line, None)
    except ChainError:
        return None
    return state
