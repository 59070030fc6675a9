"""The audit log: one sealed JSON line per request, appended with one write each.

Lines are written with a single ``write(2)`` on an ``O_APPEND`` descriptor, so
they never interleave or tear, and are in the kernel as soon as the request
ends (a ``kill -9`` loses only requests still in flight). Operational logs go
elsewhere (``logs.py``).
"""

from __future__ import annotations

import collections
import contextlib
import os
from pathlib import Path
from typing import Any, Final

import structlog

from authproxy.chain import GENESIS, ChainState, seal, tail_state
from authproxy.config import AuditConfig

log = structlog.stdlib.get_logger(__name__)

STDOUT: Final = "-"


class AuditWriter:
    """Append sealed records to the audit file, surviving write failures."""

    def __init__(self, config: AuditConfig) -> None:
        self.config = config
        self.path = Path(config.file)
        self.errors = 0
        self.written = 0
        self.dropped = 0
        self.healthy = True
        self._fd: int | None = None
        self._size = 0
        self._state = ChainState()
        self._backlog: collections.deque[bytes] = collections.deque()
        self._torn = False

    @property
    def state(self) -> ChainState:
        """The chain state after the last sealed record."""
        return self._state

    def open(self) -> None:
        """Open the file and pick up the chain where the last record left it."""
        if self.config.file == STDOUT:
            self._open_file()
            return
        state = tail_state(self.path) or tail_state(self._backup(1))
        if state is None and self._has_content(self.path):
            log.warning("audit_chain_restarted", path=str(self.path))
        self._state = state or ChainState(0, GENESIS)
        self._open_file()

    def append(self, record: dict[str, Any]) -> None:
        """Seal and write one record; on failure keep it for the next attempt."""
        line, self._state = seal(record, self._state)
        self._backlog.append(line)
        self._flush()
        while len(self._backlog) > self.config.backlog:
            self._backlog.popleft()
            self.dropped += 1

    def reopen(self) -> None:
        """Close and reopen the file (after logrotate moved it)."""
        if self.config.file == STDOUT:
            return
        self._close()
        self._flush()
        log.info("audit_reopened", path=str(self.path))

    def close(self) -> None:
        """Write what can be written and close the file."""
        self._flush()
        self._close()

    def _flush(self) -> None:
        try:
            fd = self._fd if self._fd is not None else self._open_file()
            while self._backlog:
                line = self._backlog[0]
                if self._rotation_due(len(line)):
                    fd = self._rotate()
                self._write(fd, line)
                self._backlog.popleft()
                self.written += 1
        except OSError as err:
            self._fail(err)
        else:
            if not self.healthy:
                log.info("audit_write_recovered", path=str(self.path))
            self.healthy = True

    def _write(self, fd: int, line: bytes) -> None:
        # A short write (disk full) leaves a torn line: end it before the next.
        data = b"\n" + line if self._torn else line
        written = os.write(fd, data)
        self._torn = written != len(data)
        if self._torn:
            raise OSError(f"short write ({written} of {len(data)} bytes)")
        self._size += written

    def _fail(self, err: OSError) -> None:
        self.errors += 1
        if self.healthy:
            log.error(
                "audit_write_failed",
                path=str(self.path),
                error=err.strerror or str(err),
                pending=len(self._backlog),
            )
        self.healthy = False
        self._close()

    def _open_file(self) -> int:
        if self.config.file == STDOUT:
            self._fd = os.dup(1)
            return self._fd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        return fd

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _rotation_due(self, incoming: int) -> bool:
        limit = self.config.max_bytes
        return (
            bool(limit)
            and self.config.file != STDOUT
            and self._size > 0
            and self._size + incoming > limit
        )

    def _rotate(self) -> int:
        self._close()
        for index in range(self.config.backups - 1, 0, -1):
            older = self._backup(index)
            if older.exists():
                older.replace(self._backup(index + 1))
        self.path.replace(self._backup(1))
        log.info("audit_rotated", path=str(self.path))
        return self._open_file()

    def _backup(self, index: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{index}")

    @staticmethod
    def _has_content(path: Path) -> bool:
        try:
            return path.stat().st_size > 0
        except OSError:
            return False


def rotated_files(path: Path) -> list[Path]:
    """Return ``path`` and its numbered backups, oldest first."""
    backups = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            backups.append((int(suffix), candidate))
    ordered = [p for _, p in sorted(backups, reverse=True)]
    return [*ordered, path] if path.exists() else ordered
