"""CPU used on this machine by processes that are not ours.

The 2 cores may be shared with other work (another engineer's test run).
Total busy time comes from /proc/stat; ours is this process and all its
descendants (exited children count through cutime/cstime once reaped).
The difference is foreign load, reported with every measurement so a
disturbed number can be recognised.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


def _busy_ticks() -> int:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return user + nice + system + irq + softirq + steal


def _our_ticks(root: int) -> int:
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        # utime, stime, cutime, cstime
        times[pid] = sum(int(f) for f in fields[11:15])
    ours = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                grew = True
    return sum(times.get(pid, 0) for pid in ours)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Busy and own CPU ticks at one moment."""

    at: float
    busy: int
    ours: int

    @classmethod
    def take(cls) -> Snapshot:
        """Read the counters now."""
        return cls(time.monotonic(), _busy_ticks(), _our_ticks(os.getpid()))

    def foreign_cores(self) -> float:
        """Return the average number of cores used by others since this snapshot."""
        now = Snapshot.take()
        elapsed = max(now.at - self.at, 1e-3)
        ticks = (now.busy - self.busy) - (now.ours - self.ours)
        return round(max(0, ticks) / os.sysconf("SC_CLK_TCK") / elapsed, 2)


def wait_for_quiet(threshold: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until others use under ``threshold`` cores.

    Returns:
        The foreign load of the last 2-second window.
    """
    deadline = time.monotonic() + max_wait
    while True:
        start = Snapshot.take()
        time.sleep(2)
        load = start.foreign_cores()
        if load < threshold or time.monotonic() > deadline:
            return load
