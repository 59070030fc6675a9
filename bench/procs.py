"""Child processes: start pinned, wait until they listen, read /proc, stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Wait until something accepts connections on ``127.0.0.1:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {HOST}:{port}") from None
            time.sleep(0.05)


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPUs the load side and the system under test run on."""

    load: tuple[int, ...]
    sut: tuple[int, ...]

    @classmethod
    def detect(cls) -> Pinning:
        """Put load generators and upstreams on the first CPU, proxies on the next."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(tuple(cpus), tuple(cpus))
        return cls((cpus[0],), (cpus[1],))

    @property
    def pinned(self) -> bool:
        """Tell whether load and proxies are kept apart."""
        return self.load != self.sut


def taskset(cpus: tuple[int, ...]) -> list[str]:
    """Return the command prefix that pins a child to ``cpus``."""
    if shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", ",".join(map(str, cpus))]


@dataclass
class Proc:
    """A child process with its log file; stopped by ``stop`` or at exit."""

    name: str
    cmd: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cpus: tuple[int, ...] | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> Proc:
        """Start the process, its output going to ``log_path``."""
        prefix = taskset(self.cpus) if self.cpus else []
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                prefix + self.cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        """Return the process id."""
        assert self.popen is not None
        return self.popen.pid

    def check_alive(self) -> None:
        """Raise if the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{tail}")

    def pids(self) -> list[int]:
        """Return the process id and its children's (nginx's workers)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [self.pid, *map(int, children.read_text().split())]
        except OSError:
            return [self.pid]

    def status(self) -> dict[str, int]:
        """Return VmRSS, VmHWM (KiB) and threads, summed over ``pids()``."""
        out = {"VmRSS": 0, "VmHWM": 0, "Threads": 0}
        for pid in self.pids():
            text = Path(f"/proc/{pid}/status").read_text()
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key in out:
                    out[key] += int(value.split()[0])
        return out

    def reset_hwm(self) -> bool:
        """Reset VmHWM to the current RSS (``clear_refs`` 5); False if refused."""
        try:
            for pid in self.pids():
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def cpu_seconds(self) -> float:
        """Return user + system CPU time so far: all threads, and nginx's workers."""
        total = 0
        for pid in self.pids():
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 10.0) -> None:
        """Send SIGTERM, then SIGKILL after ``timeout`` seconds."""
        popen = self.popen
        if popen is None:
            return
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)


@dataclass
class Children:
    """Every child this run started, so that all of them are stopped at the end."""

    procs: list[Proc] = field(default_factory=list)

    def start(self, proc: Proc) -> Proc:
        """Start ``proc`` and remember it."""
        self.procs.append(proc.start())
        return proc

    def stop(self, proc: Proc) -> None:
        """Stop one child."""
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for proc in reversed(self.procs):
            proc.stop(timeout=5)
        self.procs.clear()
