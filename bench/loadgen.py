"""Closed-loop load: wrk with a Lua POST script, or a Python stand-in without wrk.

wrk's ``done()`` hook prints the summary and latency percentiles as one JSON
line, which is parsed here; ``--latency`` output is kept in the run log.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.httpclient import HttpConnection, build_request
from bench.procs import HOST, taskset
from bench.stats import percentile

_LUA = """\
wrk.method = "POST"
wrk.body = {body}
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {{"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect,
    e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Throughput and latency of one closed-loop run."""

    tool: str
    connections: int
    threads: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    def as_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-ready dict."""
        return asdict(self)


def have_wrk() -> bool:
    """Tell whether wrk is installed."""
    return shutil.which("wrk") is not None


def wrk_version() -> str:
    """Return wrk's version line."""
    out = subprocess.run(
        ["wrk", "-v"], capture_output=True, text=True, check=False, timeout=10
    )
    return (out.stdout + out.stderr).splitlines()[0].split(" Copyright")[0]


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string here


def write_script(path: Path, body: bytes, headers: dict[str, str]) -> Path:
    """Write the wrk Lua script that POSTs ``body`` with ``headers``."""
    lines = [
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
    ]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    path.write_text(
        _LUA.format(body=_lua_string(body.decode()), headers="\n".join(lines))
    )
    return path


@dataclass(frozen=True, slots=True)
class WrkJob:
    """One wrk invocation: where to send, with which script and how many connections."""

    port: int
    path: str
    script: Path
    connections: int

    @property
    def threads(self) -> int:
        """Return wrk's thread count: 1 for one connection, else 2."""
        return 1 if self.connections == 1 else 2

    def command(self, duration: float, cpus: tuple[int, ...]) -> list[str]:
        """Return the wrk command line, pinned to ``cpus``."""
        return [
            *taskset(cpus),
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{max(1, round(duration))}s",  # wrk takes whole seconds
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(self.script),
            f"http://{HOST}:{self.port}{self.path}",
        ]


def run_wrk(
    jobs: list[WrkJob], *, duration: float, cpus: tuple[int, ...], log: Path
) -> list[LoadResult]:
    """Run the wrk jobs at the same time and parse each one's ``done()`` line.

    One job is the ordinary case. Two jobs against two proxies on one core
    form a same-time A/B test: the core's speed, which drifts on a shared
    virtual machine, is then the same for both.
    """
    procs = [
        (job, subprocess.Popen(
            job.command(duration, cpus),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ))
        for job in jobs
    ]  # fmt: skip
    results = []
    for job, proc in procs:
        stdout, stderr = proc.communicate(timeout=duration + 30)
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(job.command(duration, cpus))}\n{stdout}{stderr}\n")
        results.append(_parse(job, proc.returncode, stdout, stderr))
    return results


_ERROR_KEYS = ("non_2xx", "connect_errors", "read_errors", "write_errors", "timeouts")


def _parse(job: WrkJob, code: int, stdout: str, stderr: str) -> LoadResult:
    line = next((x for x in stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if code != 0 or line is None:
        raise RuntimeError(f"wrk failed ({code}): {stderr[-500:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = data["duration_us"] / 1e6
    errors = sum(data[k] for k in _ERROR_KEYS)
    return LoadResult(
        tool="wrk",
        connections=job.connections,
        threads=job.threads,
        duration_s=round(seconds, 2),
        requests=data["requests"],
        rps=round(data["requests"] / seconds, 1),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=errors,
    )


async def run_python(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connections: int,
    duration: float,
) -> LoadResult:
    """Closed-loop load from this process: the fallback when wrk is missing.

    It is slower than wrk, so absolute numbers are lower; ratios between
    targets measured with it in the same run stay comparable.
    """
    raw = build_request("POST", path, f"{HOST}:{port}", body=body, headers=headers)
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + duration

    async def worker() -> None:
        nonlocal errors
        conn = await HttpConnection.open(HOST, port)
        while time.monotonic() < deadline:
            if not conn.usable:
                conn = await HttpConnection.open(HOST, port)
            try:
                reply = await conn.request(raw)
            except (OSError, ConnectionError):
                errors += 1
                continue
            if reply.status != 200:
                errors += 1
            latencies.append(reply.latency_ms)
        conn.close()

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    seconds = time.monotonic() - start
    return LoadResult(
        tool="python",
        connections=connections,
        threads=1,
        duration_s=round(seconds, 2),
        requests=len(latencies),
        rps=round(len(latencies) / seconds, 1),
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=0.0),
        errors=errors,
    )
