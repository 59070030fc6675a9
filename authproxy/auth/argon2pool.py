"""argon2 off the event loop: a small thread pool behind a bounded queue.

Each credential is checked once however many requests wait on it. A check
asks the caller's gate (the brute-force limiter) before it starts and settles
it when it ends, so guesses in flight count against their client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import secrets
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authproxy.auth.principal import (
    Gate,
    GuessRefusedError,
    VerifyFailedError,
    VerifyStats,
)
from authproxy.errors import VerifyBusyError

Check = Callable[[], Coroutine[Any, Any, str]]


def _lower_priority() -> None:
    """Run argon2 at nice 19 so a flood of checks cannot starve the event loop.

    On Linux the nice value is per thread and inherited by the lanes argon2
    starts, so valid (cached) requests keep their latency under a flood.
    """
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def decoy_hash(hasher: PasswordHasher) -> str:
    """Return a hash in the hasher's parameters that no secret matches.

    Checking a secret against it costs exactly one real argon2 verification
    (random salt and tag; a match would need a 256-bit collision).
    """

    def b64(size: int) -> str:
        return base64.b64encode(secrets.token_bytes(size)).decode().rstrip("=")

    return (
        f"$argon2{hasher.type.name.lower()}$v=19$m={hasher.memory_cost},"
        f"t={hasher.time_cost},p={hasher.parallelism}"
        f"${b64(hasher.salt_len)}${b64(hasher.hash_len)}"
    )


class Argon2Pool:
    """Run argon2 verifications and hashes in ``workers`` threads, ``queue`` waiting."""

    def __init__(
        self,
        hasher: PasswordHasher,
        *,
        workers: int,
        queue: int,
        stats: VerifyStats,
        on_verify: Callable[[float], None] | None = None,
    ) -> None:
        self.workers = workers
        self.decoy = decoy_hash(hasher)
        self._hasher = hasher
        self._stats = stats
        self._on_verify = on_verify
        self._executor = ThreadPoolExecutor(
            workers, thread_name_prefix="argon2", initializer=_lower_priority
        )
        self._slots = asyncio.Semaphore(workers)
        self._capacity = workers + queue
        self.pending = 0
        self._inflight: dict[bytes, asyncio.Task[str]] = {}

    async def once(self, digest: bytes, check: Check, gate: Gate | None) -> str:
        """Run ``check`` once per ``digest``, however many requests wait on it.

        A client opening many connections with a new token, or a restart under
        load, would otherwise queue one argon2 check per request. The check is
        its own task, so a waiter that gives up does not cancel it for others,
        and the gate is settled when the check ends, not when a waiter leaves.

        Raises:
            GuessRefusedError: the gate refused to start a new check.
        """
        task = self._inflight.get(digest)
        if task is None:
            if gate is not None and not gate.enter():
                raise GuessRefusedError("client blocked")
            task = asyncio.get_running_loop().create_task(check())
            self._inflight[digest] = task
            task.add_done_callback(functools.partial(self._settled, digest, gate))
        else:
            self._stats.shared_verifications += 1
        return await asyncio.shield(task)

    def _settled(
        self, digest: bytes, gate: Gate | None, task: asyncio.Task[str]
    ) -> None:
        self._inflight.pop(digest, None)
        # Retrieved even if every waiter left.
        error = None if task.cancelled() else task.exception()
        if gate is not None:
            gate.settle(failed=isinstance(error, VerifyFailedError))

    async def verify(self, stored_hash: str, secret: str) -> bool:
        """Tell whether ``secret`` matches ``stored_hash`` (one argon2 verify).

        Raises:
            VerifyBusyError: ``workers + queue`` verifications are already pending.
        """
        if self.pending >= self._capacity:
            raise VerifyBusyError("verification queue full")
        self.pending += 1
        try:
            await self._slots.acquire()
            self._stats.argon2_verifications += 1
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                self._executor, self._check, stored_hash, secret
            )
            # The slot is held until argon2 really finishes, even if the
            # request is cancelled meanwhile, so the bound stays true.
            future.add_done_callback(lambda _: self._slots.release())
            return await asyncio.shield(future)
        finally:
            self.pending -= 1

    def _check(self, stored_hash: str, secret: str) -> bool:
        started = time.perf_counter()
        try:
            return self._hasher.verify(stored_hash, secret)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        finally:
            if self._on_verify is not None:
                self._on_verify(time.perf_counter() - started)

    async def hash(self, secret: str) -> str:
        """Hash ``secret`` with the configured parameters, in the pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hasher.hash, secret)

    def close(self) -> None:
        """Stop the threads; queued work is dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)
