"""The audit log: one sealed JSON line per request, appended by ``write(2)``.

Lines are written whole on an ``O_APPEND`` descriptor, so they never
interleave. The records of requests that end in one turn of the event loop
are sealed and written together at the start of the next turn, with one
``write(2)`` (``append_soon``, or ``write_all`` from ``web.finish``): before the
loop next waits for the network, so a ``kill -9`` loses only requests in
flight or ended within that same turn.
Sealing a batch keeps orjson's and SHA-256's code and data warm; one record at
a time, cold, they were a tenth of a busy proxy's CPU. Only a full disk tears
a line: the record stays queued and is written again whole on a line of its
own. Operational logs go elsewhere (``logs.py``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
from pathlib import Path
from typing import Any, Final

import structlog

from authproxy.config.model import AuditConfig
from authproxy.errors import ConfigError
from authproxy.metering.chain import GENESIS, ChainState, seal, seal_many, tail_state
from authproxy.metering.logfiles import open_private

log = structlog.stdlib.get_logger(__name__)

STDOUT: Final = "-"
BATCH_BYTES: Final = 256 * 1024  # at most this much per write(2)
RETRY_INTERVAL: Final = 1.0  # seconds between attempts while writing fails


class AuditWriter:
    """Append sealed records to the audit file, surviving write failures."""

    def __init__(self, config: AuditConfig) -> None:
        self.config = config
        self.path = Path(config.file)
        self.errors = 0
        self.written = 0
        self.dropped = 0
        self.healthy = True
        # Rotation's size limit; none for standard output.
        self._limit = config.max_bytes if config.file != STDOUT else 0
        self._fd: int | None = None
        self._size = 0
        self._state = ChainState()
        self._backlog: collections.deque[bytes] = collections.deque()
        self._torn = False
        self._retry: asyncio.TimerHandle | None = None
        self._closing = False
        self._pending: list[dict[str, Any]] = []
        self._drain_scheduled = False

    @property
    def state(self) -> ChainState:
        """The chain state after the last sealed record."""
        return self._state

    @property
    def waiting(self) -> int:
        """Records appended but not sealed yet (until the loop's next turn)."""
        return len(self._pending)

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
        """Seal and write one record now; on failure keep it for the next attempt."""
        self._pending.append(record)
        self.write_waiting()

    def add(self, record: dict[str, Any]) -> None:
        """Queue a record for the next ``write_waiting`` (a batch's caller calls it)."""
        self._pending.append(record)

    def write_all(self, records: list[dict[str, Any]]) -> None:
        """Seal and write the waiting records, then ``records``, with one ``write(2)``.

        A loop turn's finished requests, in order (``web.finish``): one call,
        not one ``add`` per record.
        """
        self._pending.extend(records)
        self.write_waiting()

    def append_soon(self, record: dict[str, Any]) -> None:
        """Seal and write the record at the start of the event loop's next turn.

        Every record appended in one turn goes out in the same ``write(2)``,
        in the order appended. Outside a running loop it is written now.
        """
        self._pending.append(record)
        if self._drain_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write_waiting()
            return
        self._drain_scheduled = True
        loop.call_soon(self.write_waiting)

    def write_waiting(self) -> None:
        """Seal the waiting records, in order, and write them with one ``write(2)``."""
        self._drain_scheduled = False
        pending, self._pending = self._pending, []
        backlog = self._backlog
        if pending:
            try:
                lines, self._state = seal_many(pending, self._state)
            except TypeError:
                # A record orjson cannot encode (a bug): queue the records
                # before it, chained, and raise at it, as one at a time would.
                for record in pending:
                    line, self._state = seal(record, self._state)
                    backlog.append(line)
                raise
            backlog.extend(lines)
        self._flush()
        while len(backlog) > self.config.backlog:
            backlog.popleft()
            self.dropped += 1

    def reopen(self) -> None:
        """Close and reopen the file (after logrotate moved it)."""
        if self.config.file == STDOUT:
            return
        self._close()
        self.write_waiting()
        log.info("audit_reopened", path=str(self.path))

    def close(self) -> None:
        """Write what can be written and close the file."""
        self._closing = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.write_waiting()
        self._close()

    def _flush(self) -> None:
        try:
            fd = self._fd if self._fd is not None else self._open_file()
            backlog = self._backlog
            while backlog:
                if self._rotation_due(len(backlog[0])):
                    fd = self._rotate()
                self._write(fd, self._batch())
        except OSError as err:
            self._fail(err)
        else:
            if not self.healthy:
                log.info("audit_write_recovered", path=str(self.path))
            self.healthy = True

    def _batch(self) -> list[bytes]:
        """Return the backlog's first lines that go in one write.

        At most ``BATCH_BYTES`` (one line at least), and none past a rotation.
        """
        limit = self._limit
        total = sum(map(len, self._backlog))
        if total <= BATCH_BYTES and not (limit and self._size + total > limit):
            return list(self._backlog)  # the usual case: all of it
        lines: list[bytes] = []
        size = 0
        for line in self._backlog:
            if lines and (
                size + len(line) > BATCH_BYTES
                or (limit and self._size + size + len(line) > limit)
            ):
                break
            lines.append(line)
            size += len(line)
        return lines

    def _write(self, fd: int, lines: list[bytes]) -> None:
        """Write the backlog's first lines in one ``write(2)``; take off those written.

        A short write (a full disk) leaves the start of a line in the file.
        The next write begins with a newline, so that torn start stays a line
        of its own, which ``audit verify`` recognises as the start of the
        record written whole after it. A record whose bytes are all in but
        its newline is whole: the next write ends its line.

        Raises:
            OSError: the write failed or was cut short; the lines not written
                whole stay queued.
        """
        done = self._written_whole(fd, lines)
        if done == len(self._backlog):
            self._backlog.clear()
        else:
            for _ in range(done):
                self._backlog.popleft()
        self.written += done
        if done < len(lines):
            raise OSError(errno.ENOSPC, f"short write ({done} of {len(lines)} lines)")

    def _written_whole(self, fd: int, lines: list[bytes]) -> int:
        """Write ``lines`` with one ``write(2)``; return how many went in whole."""
        lead = b"\n" if self._torn else b""
        data = lead + lines[0] if len(lines) == 1 else lead + b"".join(lines)
        written = os.write(fd, data)
        self._size += written
        if written == len(data):  # the usual case: all whole, newlines included
            self._torn = False
            return len(lines)
        if written:
            self._torn = data[written - 1 : written] != b"\n"
        done, end = 0, len(lead)
        for line in lines:
            end += len(line)
            if written < end - 1:
                break
            done += 1
        return done

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
        limit = self._limit
        return bool(limit) and self._size > 0 and self._size + incoming > limit

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
