"""Sample authproxy with py-spy under load and rank where its CPU time goes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# "func (path/to/file.py)" frames; paths are shortened to the package part.
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*)\)$")
_SITE = re.compile(r".*/(?:site-packages|lib/python3\.\d+)/")
# A thread-pool worker waiting for work. py-spy's idle detection misses this
# wait here, so without the filter every idle executor thread looks busy.
_IDLE_WORKER = "_worker (concurrent/futures/thread.py)"
_INCLUSIVE_PACKAGES = ("authproxy/", "aiohttp/", "structlog/", "logging/")
_INCLUSIVE_FILES = ("(authproxy/cli.py)", "(authproxy/server.py)")


def py_spy() -> str | None:
    """Return the py-spy binary next to this interpreter, or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """Start ``py-spy record`` on ``pid`` for ``seconds`` (raw collapsed stacks)."""
    binary = py_spy()
    if binary is None:
        return None
    cmd = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nolineno",
        "--output",
        str(out),
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=out.with_suffix(".err").open("wb")
    )


def _frame(raw: str) -> str:
    match = _FRAME.match(raw.strip())
    if not match:
        return raw.strip()
    path = _SITE.sub("", match["file"])
    path = re.sub(r".*/wt-bench/|.*/(?=authproxy/)", "", path)
    return f"{match['func']} ({path})"


def _group(frame: str) -> str:
    path = frame.rsplit("(", 1)[-1].rstrip(")")
    top = path.split("/", 1)[0]
    if top.endswith(".py") or top == path:
        return f"stdlib:{top.removesuffix('.py')}" if path.endswith(".py") else top
    return top


def summarise(raw_file: Path, top: int = 20) -> dict[str, Any]:
    """Rank functions by self and inclusive samples, and packages by self samples."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = idle = 0
    for line in raw_file.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        if frames[-1] == _IDLE_WORKER:
            idle += count
            continue
        total += count
        own[frames[-1]] += count
        groups[_group(frames[-1])] += count
        for frame in set(frames):
            incl[frame] += count

    def ranked(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": f, "samples": n, "pct": round(100 * n / total, 1)}
            for f, n in counter.most_common(top)
        ]

    # Inclusive time is shown for our code and the libraries it calls, minus
    # the frames every sample passes through (the loop and the entry point).
    wanted = Counter(
        {
            f: n
            for f, n in incl.items()
            if not f.endswith(_INCLUSIVE_FILES)
            and any(f"({p}" in f for p in _INCLUSIVE_PACKAGES)
            and n < 0.97 * total
        }
    )

    return {
        "samples": total,
        "idle_worker_samples_excluded": idle,
        "self": ranked(own),
        "inclusive": ranked(wanted),
        "by_package": ranked(groups),
    }
