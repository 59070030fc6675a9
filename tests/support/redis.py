"""A real ``redis-server`` for tests: a free port, a temporary directory, no saving.

``stop()`` shuts it down saving its data once (``SHUTDOWN SAVE``), so
``start()`` brings it back on the same port with the same keys: an outage.
``kill()`` is ``kill -9``: it comes back empty, as a server without
persistence does.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final

START_TIMEOUT: Final = 10.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(port: int, *words: str, timeout: float = 1.0) -> bytes:
    """Send one inline command and return the first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(" ".join(words).encode() + b"\r\n")
        return sock.recv(4096)


class RedisServer:
    """One ``redis-server`` process the test owns."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run .ci/test-deps")
        self.binary = binary
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The ``redis://`` URL of database 0 (never with the password)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def _auth(self) -> tuple[str, ...]:
        return ("AUTH", self.password) if self.password else ()

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("redis-server exited; see redis.log")
            try:
                if b"PONG" in _command(self.port, "PING"):
                    return
                if b"NOAUTH" in _command(self.port, "PING"):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        """Shut down, saving the data once, so ``start()`` brings it back."""
        if self.process is None:
            return
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            if self.password:
                sock.sendall(f"AUTH {self.password}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"SHUTDOWN SAVE\r\n")
            sock.recv(64)  # the server closes the connection
        self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """``kill -9`` the server: its data is gone."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None
        (self.directory / "dump.rdb").unlink(missing_ok=True)

    def close(self) -> None:
        """Kill the server if it still runs (the fixture's teardown)."""
        self.kill()
