"""Streaming scenarios, client side: chunk delay, time to first byte, many streams.

Every chunk the streamer writes carries ``t=<monotonic ns>`` of its write.
CLOCK_MONOTONIC is system-wide on Linux, so arrival minus stamp is the time
the chunk spent between the upstream's ``write`` and this client's
``data_received``. The direct run gives the floor (kernel + both event
loops); a proxy's extra delay is its percentile minus the direct one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import bodies
from bench.httpclient import HttpConnection, build_request
from bench.procs import HOST
from bench.stats import summary

_MARK = bodies.STAMP_MARK
_MARK_LEN = len(_MARK)


@dataclass(slots=True)
class StampSink:
    """Splits body data into NDJSON lines and records each stamped chunk's delay."""

    delays: list[float]
    steady: list[float]
    steady_from_ns: int = 0
    tail: bytes = b""
    chunks: int = 0
    done: bool = False

    def __call__(self, data: bytes, now: int) -> None:
        buf = self.tail + data if self.tail else data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            i = buf.find(_MARK, start, end)
            if i >= 0:
                j = buf.find(b'"', i + _MARK_LEN, end)
                delay = (now - int(buf[i + _MARK_LEN : j])) / 1e6
                self.delays.append(delay)
                if now >= self.steady_from_ns:
                    self.steady.append(delay)
                self.chunks += 1
            elif buf.find(b'"done":true', start, end) >= 0:
                self.done = True
            start = end + 1
        self.tail = buf[start:]


@dataclass(slots=True)
class _Tally:
    delays: list[float] = field(default_factory=list)
    steady: list[float] = field(default_factory=list)
    steady_from_ns: int = 0
    ttfb: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.failed += 1
        self.failures[why] = self.failures.get(why, 0) + 1


def _stream_request(
    port: int, headers: dict[str, str], chunks: int, gap_ms: float
) -> bytes:
    path = f"{bodies.CHAT_PATH}?chunks={chunks}&gap_ms={gap_ms:g}"
    return build_request(
        "POST", path, f"{HOST}:{port}", body=bodies.STREAM_REQUEST, headers=headers
    )


async def _one_stream(
    conn: HttpConnection, raw: bytes, chunks: int, tally: _Tally
) -> None:
    sink = StampSink(tally.delays, tally.steady, tally.steady_from_ns)
    try:
        reply = await conn.request(raw, sink)
    except (OSError, ConnectionError) as err:
        tally.fail(type(err).__name__)
        return
    if reply.status != 200:
        tally.fail(f"status {reply.status}")
    elif sink.chunks != chunks or not sink.done:
        tally.fail("incomplete")
    else:
        tally.completed += 1
        tally.ttfb.append(reply.ttfb_ms)
        tally.durations.append(reply.latency_ms)


async def fidelity(
    port: int,
    headers: dict[str, str],
    *,
    streams: int = 4,
    rounds: int = 25,
    chunks: int = 25,
    gap_ms: float = 10.0,
) -> dict[str, Any]:
    """Run ``streams`` connections, each doing ``rounds`` streams one after another."""
    raw = _stream_request(port, headers, chunks, gap_ms)
    tally = _Tally()

    async def worker(index: int) -> None:
        # Stagger the workers so their chunks do not tick in step.
        await asyncio.sleep(index * gap_ms / 1000 / streams)
        conn = await HttpConnection.open(HOST, port)
        for _ in range(rounds):
            if not conn.usable:
                conn = await HttpConnection.open(HOST, port)
            await _one_stream(conn, raw, chunks, tally)
        conn.close()

    await asyncio.wait_for(
        asyncio.gather(*(worker(i) for i in range(streams))),
        timeout=rounds * (chunks + 1) * gap_ms / 1000 * 2 + 30,
    )
    return {
        "streams": streams * rounds,
        "concurrent": streams,
        "chunks_per_stream": chunks,
        "gap_ms": gap_ms,
        "completed": tally.completed,
        "failed": tally.failed,
        "failures": tally.failures,
        "ttfb_ms": summary(tally.ttfb),
        "chunk_delay_ms": summary(tally.delays),
        "steady_chunk_delay_ms": summary(tally.steady),
    }


async def many_streams(
    port: int,
    headers: dict[str, str],
    *,
    streams: int,
    chunks: int,
    gap_ms: float,
    sample: Callable[[], None],
    ramp: float = 2.0,
) -> dict[str, Any]:
    """Hold ``streams`` slow streams open at once; ``sample`` runs every 250 ms.

    Streams start evenly over ``ramp`` seconds, so their chunk phases spread
    over the gap instead of all ticking together.
    """
    raw = _stream_request(port, headers, chunks, gap_ms)
    tally = _Tally()
    conns: list[HttpConnection] = []

    async def one() -> None:
        try:
            conn = await HttpConnection.open(HOST, port)
        except OSError as err:
            tally.fail(f"connect {type(err).__name__}")
            return
        conns.append(conn)
        await _one_stream(conn, raw, chunks, tally)
        conn.close()

    async def sampler() -> None:
        while True:
            sample()
            await asyncio.sleep(0.25)

    sampling = asyncio.create_task(sampler())
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    expected = chunks * gap_ms / 1000
    # Steady state: from one second after the last stream has started.
    tally.steady_from_ns = time.monotonic_ns() + int((ramp + 1) * 1e9)
    try:
        for index in range(streams):
            delay = start + index * ramp / streams - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        _, pending = await asyncio.wait(tasks, timeout=expected + 60)
        for task in pending:
            task.cancel()
            tally.fail("timeout")
    finally:
        sampling.cancel()
        for conn in conns:
            conn.close()
    sample()
    return {
        "streams": streams,
        "chunks_per_stream": chunks,
        "gap_ms": gap_ms,
        "completed": tally.completed,
        "failed": tally.failed,
        "failures": tally.failures,
        "wall_s": round(time.monotonic() - start, 2),
        "expected_stream_s": expected,
        "stream_duration_s": {
            k: (v / 1000 if k != "count" else v)
            for k, v in summary(tally.durations).items()
        },
        "ttfb_ms": summary(tally.ttfb),
        "chunk_delay_ms": summary(tally.delays),
        "steady_chunk_delay_ms": summary(tally.steady),
    }
