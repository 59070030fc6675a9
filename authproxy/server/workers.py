"""``server.workers``: N server processes on one host sharing the port, one supervisor.

The supervisor reserves each listener's address (a bound socket with
``SO_REUSEPORT`` that never listens, so a port ``0`` becomes one port for all),
forks the workers, and then only watches them: SIGTERM and SIGINT stop every
worker and then itself, SIGHUP is passed on to each (reload keys,
certificates, reopen logs), and a worker that dies is started again after a
back-off that doubles while it keeps dying (0.5 s up to 30 s). A worker that
fails on its first start (a port in use, a bad store) stops the whole server
with its exit code: a restart would fail the same way.

Each worker listens with ``SO_REUSEPORT``, so the kernel spreads connections
over them. It writes its own audit file and admin trail (a hash chain needs
one writer): ``<stem>.w<N><suffix>``, e.g. ``usage.w1.jsonl``,
``admin.w1.jsonl``. Allowed only with ``state.backend: redis`` (the config
check): the limits, the key table and the idempotency cache are then shared.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Final

import structlog

from authproxy.config.model import Config, admin_trail_file
from authproxy.errors import ConfigError, KeyStoreError, ListenError

log = structlog.stdlib.get_logger(__name__)

BACKOFF_MIN: Final = 0.5
BACKOFF_MAX: Final = 30.0
STABLE: Final = 10.0  # a worker up this long starts its back-off over
TICK: Final = 0.2
# After SIGTERM, on top of server.shutdown_timeout, before a worker is killed.
STOP_GRACE: Final = 5.0

RunWorker = Callable[[Config, Callable[[], None] | None], int]


def worker_file(path: Path, index: int) -> Path:
    """Return worker ``index``'s file: ``usage.jsonl`` -> ``usage.w1.jsonl``."""
    return path.with_name(f"{path.stem}.w{index}{path.suffix}")


def worker_config(config: Config, index: int) -> Config:
    """Return ``config`` for worker ``index``: its own audit file and admin trail."""
    audit = config.audit
    file = (
        audit.file if audit.file == "-" else str(worker_file(Path(audit.file), index))
    )
    admin_file = str(worker_file(admin_trail_file(config), index))
    return dataclasses.replace(
        config, audit=dataclasses.replace(audit, file=file, admin_file=admin_file)
    )


def _reserve(listen: str, setting: str) -> tuple[socket.socket, str]:
    """Bind ``listen`` with SO_REUSEPORT without listening; return it and its address.

    Raises:
        ListenError: the address cannot be bound.
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as err:
        why = os.strerror(err.errno).lower() if err.errno else "cannot listen"
        raise ListenError(f"cannot bind {listen}: {why} (setting {setting})") from None
    bound = sock.getsockname()[1]
    return sock, f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"


def _reserve_all(config: Config) -> tuple[Config, list[socket.socket]]:
    """Reserve every listener's address; return the config with the ports fixed."""
    sockets: list[socket.socket] = []
    listen = config.listen
    sock, address = _reserve(f"{listen.host}:{listen.port}", "listen / --listen")
    sockets.append(sock)
    port = int(address.rpartition(":")[2])
    config = dataclasses.replace(config, listen=dataclasses.replace(listen, port=port))
    if config.admin.listen:
        sock, address = _reserve(config.admin.listen, "admin.listen / --admin-listen")
        sockets.append(sock)
        admin = dataclasses.replace(config.admin, listen=address)
        config = dataclasses.replace(config, admin=admin)
    if config.tls.redirect_listen:
        sock, address = _reserve(config.tls.redirect_listen, "tls.redirect_listen")
        sockets.append(sock)
        tls = dataclasses.replace(config.tls, redirect_listen=address)
        config = dataclasses.replace(config, tls=tls)
    return config, sockets


def _work(run: RunWorker, config: Config, ready: Callable[[], None]) -> None:
    """Run in a worker: default signal handling, then the server."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    try:
        code = run(config, ready)
    except (ConfigError, KeyStoreError) as err:
        print(f"authproxy: {err}", file=sys.stderr, flush=True)
        code = 2 if isinstance(err, ConfigError) else 1
    sys.exit(code)


@dataclasses.dataclass(slots=True)
class _Worker:
    index: int
    process: BaseProcess
    started: float
    ready: multiprocessing.synchronize.Event  # set once it serves
    failures: int = 0
    due: float | None = None  # when a dead worker starts again


class Supervisor:
    """Start ``server.workers`` workers, pass signals on, restart the dead."""

    def __init__(self, config: Config, run: RunWorker) -> None:
        self.config = config
        self.run_worker = run
        self.context = multiprocessing.get_context("fork")
        self.workers: dict[int, _Worker] = {}
        self.stopping = False
        self.reload = False

    def _start(self, index: int, failures: int = 0) -> None:
        ready = self.context.Event()
        process = self.context.Process(
            target=_work,
            args=(self.run_worker, worker_config(self.config, index), ready.set),
            name=f"authproxy-w{index}",
        )
        process.start()
        self.workers[index] = _Worker(index, process, time.monotonic(), ready, failures)
        log.info("worker_started", worker=index, pid=process.pid)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        else:
            self.stopping = True

    def run(self) -> int:
        """Supervise until SIGTERM or SIGINT; return the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        log.info("supervisor_started", workers=self.config.server.workers)
        for index in range(1, self.config.server.workers + 1):
            self._start(index)
        code = 0
        while not self.stopping:
            if self.reload:
                self.reload = False
                log.info("sighup_received", workers=len(self.workers))
                self._signal_all(signal.SIGHUP)
            alive = [w.process.sentinel for w in self.workers.values() if w.due is None]
            multiprocessing.connection.wait(alive, timeout=TICK)
            code = self._tend()
            if code:
                break
        self._stop()
        log.info("supervisor_stopped", exit_code=code)
        return code

    def _tend(self) -> int:
        """Note dead workers, start the due ones; a first start's failure is fatal."""
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.due is not None:
                if now >= worker.due and not self.stopping:
                    self._start(worker.index, worker.failures)
                continue
            if worker.process.is_alive():
                continue
            exitcode = worker.process.exitcode
            was_ready = worker.ready.is_set()
            log.warning(
                "worker_exited",
                worker=worker.index,
                pid=worker.process.pid,
                exit_code=exitcode,
                served=was_ready,
            )
            # Exiting by itself before it served, on its first start: a start-up
            # failure (exit 1 or 2) that a restart would repeat. A signal is a crash.
            first_start = worker.failures == 0 and not was_ready
            if first_start and exitcode and exitcode > 0 and not self.stopping:
                return exitcode
            failures = 0 if now - worker.started >= STABLE else worker.failures + 1
            delay = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** max(failures - 1, 0))
            worker.failures, worker.due = max(failures, 1), now + delay
        return 0

    def _signal_all(self, sig: int) -> None:
        for worker in self.workers.values():
            if worker.due is None and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, sig)

    def _stop(self) -> None:
        """Stop every worker: SIGTERM, then SIGKILL past the shutdown timeout."""
        log.info("supervisor_stopping", workers=len(self.workers))
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.config.server.shutdown_timeout + STOP_GRACE
        for worker in self.workers.values():
            if worker.due is not None:
                continue
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                log.warning("worker_killed", worker=worker.index)
                worker.process.kill()
                worker.process.join()


def supervise(config: Config, run: RunWorker) -> int:
    """Run ``server.workers`` processes of ``run`` on shared ports; return its code."""
    try:
        config, sockets = _reserve_all(config)
    except ListenError as err:
        print(f"authproxy: {err}", file=sys.stderr)
        return 1
    try:
        return Supervisor(config, run).run()
    finally:
        for sock in sockets:
            sock.close()
