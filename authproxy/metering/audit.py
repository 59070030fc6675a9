"""The audit log: one sealed JSON line per request, appended with one write each.

Lines are written with a single ``write(2)`` on an ``O_APPEND`` descriptor, so
they never interleave, and are in the kernel as soon as the request ends (a
``kill -9`` loses only requests still in flight). Only a full disk tears one:
the record stays queued and is written again whole on a line of its own.
Operational logs go elsewhere (``logs.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import Any, Final

import structlog

from authproxy.config.model import AuditConfig
from authproxy.errors import ConfigError
from authproxy.metering.chain import GENESIS, ChainState, seal, tail_state

log = structlog.stdlib.get_logger(__name__)

STDOUT: Final = "-"
RETRY_INTERVAL: Final = 1.0  # seconds between attempts while writing fails
FILE_MODE: Final = 0o600
_OPEN_FLAGS: Final = (
    # Read access too: the last byte says whether a line was left torn.
    os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
)


def open_private(path: Path, flags: int = _OPEN_FLAGS) -> int:
    """Open a log file without following a symlink; make it mode 0600.

    A file that already existed with a wider mode is narrowed to 0600.

    Raises:
        OSError: the file cannot be opened or narrowed; a symlink at ``path``
            gives ``ELOOP`` with a message that says so.
    """
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as err:
        if err.errno == errno.ELOOP and path.is_symlink():
            raise OSError(
                errno.ELOOP, "is a symbolic link; refusing to follow it"
            ) from None
        raise
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


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
        self._retry: asyncio.TimerHandle | None = None
        self._closing = False

    @property
    def state(self) -> ChainState:
        """The chain state after the last sealed record."""
        return self._state

    def open(self) -> None:
        """Open the file and pick up the chain where the last record left it.

        Raises:
            ConfigError: the file cannot be opened (a symlink, no permission),
                naming ``audit.file``.
        """
        if self.config.file == STDOUT:
            self._open_file()
            return
        state = tail_state(self.path) or tail_state(self._backup(1))
        if state is None and self._has_content(self.path):
            log.warning("audit_chain_restarted", path=str(self.path))
        self._state = state or ChainState(0, GENESIS)
        try:
            self._open_file()
        except OSError as err:
            raise ConfigError(
                f"audit.file: cannot open {self.path}: {err.strerror or err}"
            ) from None

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
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
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
        """Write one line; a short write raises and leaves the line queued.

        A short write (a full disk) leaves the start of the line in the file.
        The next write begins with a newline, so that torn start stays a line
        of its own, which ``audit verify`` recognises as the start of the
        record written whole after it.
        """
        data = b"\n" + line if self._torn else line
        written = os.write(fd, data)
        self._size += written
        if written == len(data):  # the usual case: whole, newline included
            self._torn = False
            return
        if written:
            self._torn = data[written - 1 : written] != b"\n"
        if written < len(data) - 1:
            raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
        # Only the newline missing: the record is whole; the next write ends it.

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
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        # Without traffic nothing else would write the backlog (and, with
        # audit.required, clear the 503s) once the disk has room again.
        if self._retry is not None or self._closing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop: the next append() retries
            return
        self._retry = loop.call_later(RETRY_INTERVAL, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if not self.healthy:
            self._flush()

    def _open_file(self) -> int:
        if self.config.file == STDOUT:
            self._fd = os.dup(1)
            return self._fd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_private(self.path)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        # Whether the file ends inside a line: a torn write, by this process
        # before a rotation or reopen, or by an earlier one.
        self._torn = self._size > 0 and os.pread(fd, 1, self._size - 1) != b"\n"
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
        # rename(2) moves names, never what a symlink points to; lexists so a
        # planted symlink is moved along like a file, not skipped.
        for index in range(self.config.backups - 1, 0, -1):
            older = self._backup(index)
            if os.path.lexists(older):
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
