"""``python -m bench``: run every scenario, check the targets, write the results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

from bench import (
    authproxy,
    loadgen,
    machine,
    nginx,
    redisrow,
    report,
    scenarios,
    targets,
)
from bench.lab import Lab
from bench.procs import Pinning
from bench.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()

    dirty = " (dirty)" if git("status", "--porcelain", "--", "authproxy") else ""
    return git("rev-parse", "--short", "HEAD") + dirty


def _meta(pin: Pinning) -> dict[str, Any]:
    if pin.pinned:
        pinning = (
            f"load generator, origin and streamer on CPU {pin.load}; proxy under "
            f"test (authproxy or nginx front, 1 process/worker) on CPU {pin.sut}"
        )
    else:
        pinning = "none (fewer than 2 CPUs or no taskset)"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "argon2_cffi": metadata.version("argon2-cffi"),
        "nginx": nginx.version() if nginx.available() else "nginx missing",
        "wrk": loadgen.wrk_version() if loadgen.have_wrk() else "wrk missing",
        "authproxy": authproxy.version(),
        "git": _git(),
        "pinning": pinning,
        "load_generator": "wrk"
        if loadgen.have_wrk()
        else "Python closed-loop fallback (wrk missing: absolute req/s are lower)",
    }


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def run(settings: Settings, keep: bool, only: str | None = None) -> dict[str, Any]:
    """Run every scenario (or ``only`` one) in a fresh directory; stop every child."""
    started = time.monotonic()
    run_dir = Path(tempfile.mkdtemp(prefix="authproxy-bench-"))
    run_dir.chmod(0o755)  # nginx workers read the htpasswd file in it
    pin = Pinning.detect()
    os.sched_setaffinity(0, pin.load)  # the Python clients run here
    # Disturbed measurements are repeated only while the whole run stays
    # well inside bench/run's 10-minute bound.
    lab = Lab(run_dir, settings, pin, retry_until=started + 330)
    print(f"run directory: {run_dir}", flush=True)
    quiet = machine.wait_for_quiet(threshold=0.1, max_wait=60)
    print(f"other processes use {quiet} cores", flush=True)
    whole = machine.Snapshot.take()
    try:
        lab.create_keys()
        lab.start_upstreams()
        results: dict[str, Any] = {"settings": dataclasses.asdict(settings)}
        if only is None:
            results["small_requests"] = scenarios.small_requests(lab)
            results["streams"] = scenarios.stream_scenarios(lab)
            results["auth"] = scenarios.auth_scenarios(lab)
        results["redis_backend"] = redisrow.redis_backend(lab)
    finally:
        lab.children.stop_all()
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    meta = _meta(pin)
    meta["wall_s"] = round(time.monotonic() - started, 1)
    meta["foreign_cores_at_start"] = quiet
    meta["foreign_cores_mean"] = whole.foreign_cores()
    meta["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["meta"] = meta
    checks = targets.evaluate(results) if only is None else []
    results["targets"] = [c.as_dict() for c in checks]
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print the markdown and write the result files."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="short run to try things out"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument(
        "--only",
        choices=["redis-backend"],
        help="run just this scenario (results/only-NAME.*, never latest.*)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="also save results/NAME.{json,md} (default: a timestamp)",
    )
    args = parser.parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    if args.no_profile:
        settings = dataclasses.replace(settings, profile=False)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    _raise_fd_limit()
    results = run(settings, args.keep, args.only)
    markdown = report.render(results)
    print("\n" + markdown)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = args.name or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # Quick runs are for trying things out: they never replace latest.*.
    stems = ("quick",) if args.quick else ("latest", name)
    if args.only:
        stems = (f"only-{args.only}",)
    for stem in stems:
        (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
        (RESULTS / f"{stem}.md").write_text(markdown + "\n")
    print(
        f"results written to {RESULTS}/{{{','.join(stems)}}}.{{json,md}}",
        file=sys.stderr,
    )
    return 0
