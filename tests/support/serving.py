"""`authproxy serve` as a child process: start it and read its JSON events."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Self

import pytest
import yaml

from authproxy.keys.store import TOKEN_RE
from tests.support.harness import nested


class ServeProcess:
    """A running `authproxy serve` and what it printed."""

    config_path: Path
    started: dict[str, Any]

    def __init__(self, proc: asyncio.subprocess.Process, timeout: float = 10) -> None:
        self.proc = proc
        self.timeout = timeout
        self.lines: list[str] = []
        self.port = 0

    @classmethod
    async def spawn(cls, config: dict[str, Any], path: Path, *flags: str) -> Self:
        """Write ``config`` to ``path`` and start `serve` on a free loopback port."""
        path.write_text(yaml.safe_dump(nested(config)))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "authproxy",
            "serve",
            "--config",
            str(path),
            "--listen",
            "127.0.0.1:0",
            *flags,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        server = cls(proc)
        server.config_path = path
        return server

    async def until_started(self) -> None:
        """Wait for ``server_started`` and note the port it listens on."""
        self.started = await self.wait_for("server_started")
        self.port = int(self.started["listen"][0].rsplit(":", 1)[1])

    async def wait_for(self, event: str) -> dict[str, Any]:
        """Read output lines until the JSON event named ``event``."""
        async with asyncio.timeout(self.timeout):
            while True:
                assert self.proc.stdout is not None
                raw = await self.proc.stdout.readline()
                if not raw:
                    pytest.fail(f"the process exited before {event}: {self.lines}")
                line = raw.decode()
                self.lines.append(line)
                if line.startswith("{"):
                    data: dict[str, Any] = json.loads(line)
                    if data.get("event") == event:
                        return data

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def first_token(server: ServeProcess) -> str:
    """Return the token `serve` printed when it created the key store."""
    match = TOKEN_RE.search("".join(server.lines))
    assert match is not None
    return match.group(0)
