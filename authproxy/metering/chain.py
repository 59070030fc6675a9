"""The audit log's hash chain: seal records into lines, read the tail, verify files.

Each line is one compact JSON object whose last two fields are ``prev_hash``
(the ``hash`` of the record before it) and ``hash`` (SHA-256 of the line's
bytes with the ``hash`` field removed). ``seq`` counts records along the chain,
which continues across restarts and rotations, so an edited, deleted or
reordered line breaks it. A torn line (the start of a record, left by a
short write on a full disk) is skipped with a warning when the record after
it is that record written whole.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

GENESIS: Final = "0" * 64
_SUFFIX_LEN: Final = len(',"hash":"') + 64 + len('"}')
_SUFFIX_RE: Final = re.compile(rb',"hash":"([0-9a-f]{64})"\}$')
TAIL_SCAN: Final = 1 << 20  # bytes read back from the end for the last record


class ChainState(NamedTuple):
    """Where the chain stands: the last record's sequence number and hash.

    A named tuple: made once per record, three times cheaper than a frozen
    dataclass.
    """

    seq: int = 0
    hash: str = GENESIS


def seal(record: dict[str, Any], state: ChainState) -> tuple[bytes, ChainState]:
    """Add ``seq``, ``prev_hash`` and ``hash`` to a record; return its line.

    Returns:
        The line (ending in a newline) and the chain state after it.
    """
    lines, state = seal_many((record,), state)
    return lines[0], state


def seal_many(
    records: Iterable[dict[str, Any]], state: ChainState
) -> tuple[list[bytes], ChainState]:
    """Seal records in order, each chained to the one before; return their lines.

    The same lines as ``seal`` one record at a time, at two thirds of its cost:
    the previous hash stays ASCII bytes from one record to the next, and the
    hash is fed the line's parts rather than a copy of them joined.

    Returns:
        The lines (each ending in a newline) and the chain state after the last.
    """
    lines: list[bytes] = []
    append = lines.append
    dumps = orjson.dumps
    sha256 = hashlib.sha256
    seq = state.seq
    prev = state.hash.encode("ascii")
    for record in records:
        seq += 1
        head = dumps(record)[:-1]  # without its closing brace
        if len(head) > 1 and "seq" not in record and "prev_hash" not in record:
            # The same bytes as dumping {**record, "seq": ..., "prev_hash": ...},
            # without copying the record.
            chain = b',"seq":%d,"prev_hash":"%b"' % (seq, prev)
        else:  # seq and prev_hash would replace keys in place, or no comma
            head = dumps({**record, "seq": seq, "prev_hash": prev.decode()})[:-1]
            chain = b""
        # The hash covers the body: the line without its ``hash`` field.
        digest = sha256(head)
        digest.update(chain)
        digest.update(b"}")
        prev = digest.hexdigest().encode("ascii")
        append(b'%b%b,"hash":"%b"}\n' % (head, chain, prev))
    return lines, ChainState(seq, prev.decode("ascii"))


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
    files: int = 0
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether every record verified (warnings allowed)."""
        return self.error is None

    @property
    def torn(self) -> int:
        """How many torn lines were skipped."""
        return len(self.warnings)


class _Broken(Exception):
    """The chain is broken at a location; the message says where and why."""


class _Walk:
    """Follow the chain line by line, setting torn lines aside until resolved.

    A short write (a full disk) leaves the start of a line in the file; the
    writer then ends it with a newline and writes the record again whole. So a
    line without a seal is a torn write exactly when it is the start of the
    next record: that record proves nothing was lost. Anything else fails.
    """

    def __init__(self) -> None:
        self.state: ChainState | None = None
        self.records = 0
        self.warnings: list[str] = []
        self._torn: list[tuple[str, bytes]] = []

    def line(self, where: str, line: bytes) -> None:
        if _SUFFIX_RE.search(line) is None:
            self._torn.append((where, line))
            return
        try:
            _, state = check_line(line, self.state)
        except ChainError as err:
            after = (
                f" (after the torn line at {self._torn[0][0]})" if self._torn else ""
            )
            raise _Broken(f"{where}: {err}{after}") from None
        for torn_at, fragment in self._torn:
            if not line.startswith(fragment):
                raise _Broken(
                    f"{torn_at}: not a sealed audit record (no trailing hash), "
                    f"nor a torn write of the record at {where}"
                )
            self.warnings.append(
                f"{torn_at}: torn line skipped (a short write): "
                f"its record, seq {state.seq}, was written whole at {where}"
            )
        self._torn.clear()
        self.state = state
        self.records += 1

    def finish(self) -> None:
        # Torn lines after the last record: an unfinished write (the disk is
        # still full, or the writer stopped). Whether its record is merely
        # waiting or lost cannot be told from the file, just as no chain can
        # tell a tail cut at a line boundary; nothing before it is missing.
        for torn_at, fragment in self._torn:
            if fragment and not fragment.startswith(b"{"):
                raise _Broken(
                    f"{torn_at}: not a sealed audit record (no trailing hash)"
                )
            self.warnings.append(
                f"{torn_at}: torn last line skipped: an unfinished write; its "
                "record is not in the log (still waiting to be written, or lost)"
            )


def verify_files(paths: Iterable[Path]) -> VerifyReport:
    """Verify files, oldest first, as one chain.

    The first record of the first file may follow anything (older files may
    have been deleted); every later record must follow its predecessor. Torn
    lines (see ``_Walk``) are skipped with a warning.
    """
    walk = _Walk()
    files = 0

    def report(error: str | None = None) -> VerifyReport:
        return VerifyReport(walk.records, files, error, tuple(walk.warnings))

    try:
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError as err:
                return report(f"{path}: cannot read: {err.strerror}")
            files += 1
            lines = data.split(b"\n")
            for number, line in enumerate(lines[:-1], start=1):
                walk.line(f"{path}:{number}", line)
            if lines[-1]:  # no newline at the end
                walk.line(f"{path}:{len(lines)}", lines[-1])
        walk.finish()
    except _Broken as err:
        return report(str(err))
    return report()


def split_chains(paths: Iterable[Path]) -> list[list[Path]]:
    """Group audit files into chains: a file with its numbered backups.

    Each replica writes its own chain, so ``a.jsonl``, ``a.jsonl.1`` and
    ``a.jsonl.2`` are one chain and ``b.jsonl`` another. A chain's files are
    put oldest first (the highest backup number first, the live file last);
    chains keep the order in which their first file was given.
    """
    chains: dict[Path, list[tuple[int, Path]]] = {}
    for path in paths:
        stem, dot, suffix = path.name.rpartition(".")
        if dot and stem and suffix.isdigit():
            base, age = path.with_name(stem), int(suffix)
        else:
            base, age = path, 0
        files = chains.setdefault(base, [])
        if all(p != path for _, p in files):
            files.append((age, path))
    return [
        [p for _, p in sorted(files, key=lambda f: -f[0])] for files in chains.values()
    ]


def read_last_record(path: Path) -> bytes | None:
    """Return the last line of a file that ends in a seal, or ``None``.

    Torn lines after it (see ``_Walk``) are passed over, looking back at most
    ``TAIL_SCAN`` bytes. The line may lack its newline.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        pos = os.lseek(fd, 0, os.SEEK_END)
        tail = b""
        while pos > 0 and len(tail) < TAIL_SCAN:
            step = min(65536, pos)
            pos -= step
            tail = os.pread(fd, step, pos) + tail
            # The last piece has no newline: a torn line, or a whole record
            # whose newline did not fit on the disk. Only the latter is sealed.
            lines = tail.split(b"\n")
            for line in reversed(lines[1:] if pos > 0 else lines):
                if _SUFFIX_RE.search(line) is not None:
                    return line
        return None
    finally:
        os.close(fd)


def tail_state(path: Path) -> ChainState | None:
    """Return the chain state after the last record of ``path``, if valid."""
    line = read_last_record(path)
    if line is None:
        return None
    try:
        _, state = check_line(line, None)
    except ChainError:
        return None
    return state
