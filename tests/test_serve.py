"""`authproxy serve` as a real process: bootstrap, proxying, SIGHUP, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from authproxy.keystore import TOKEN_RE
from tests.conftest import Secrets, nested
from tests.fake_ollama.server import FakeOllama


class ServeProcess:
    """A running `python -m authproxy serve` and what it printed."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.port = 0

    async def wait_for(self, event: str) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                assert self.proc.stdout is not None
                raw = await self.proc.stdout.readline()
                if not raw:
                    pytest.fail(f"serve exited before {event}: {self.lines}")
                line = raw.decode()
                self.lines.append(line)
                if line.startswith("{"):
                    data: dict[str, Any] = json.loads(line)
                    if data.get("event") == event:
                        return data

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def serve(
    tmp_path: Path, overrides: dict[str, Any], secrets_seen: Secrets
) -> AsyncIterator[ServeProcess]:
    """Start `authproxy serve` on a free port with no key store yet."""
    config = {**overrides, "keys.reload_interval": "1h", "log.format": "json"}
    path = tmp_path / "serve.yaml"
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
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    server = ServeProcess(proc)
    started = await server.wait_for("server_started")
    server.port = int(started["listen"][0].rsplit(":", 1)[1])
    yield server
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    output = "".join(server.lines)
    for secret in secrets_seen.values:
        assert output.count(secret) <= 1, "a secret was printed more than once"


def first_token(server: ServeProcess) -> str:
    match = TOKEN_RE.search("".join(server.lines))
    assert match is not None
    return match.group(0)


async def test_first_start_creates_a_key_and_prints_it_once(
    serve: ServeProcess, keys_path: Path, fake: FakeOllama, secrets_seen: Secrets
) -> None:
    """With no store, serve creates one with a first key; that token works."""
    token = first_token(serve)
    secrets_seen.add(token)
    assert "created key store" in serve.lines[0]
    assert keys_path.exists()
    assert token not in keys_path.read_text()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{serve.url}/api/tags") as resp:
            assert resp.status == HTTPStatus.UNAUTHORIZED
        async with session.post(
            f"{serve.url}/api/chat",
            json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]},
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            assert resp.status == HTTPStatus.OK
            assert await resp.read() == b"".join(fake.sent)
    serve.proc.send_signal(signal.SIGTERM)
    stopped = await serve.wait_for("server_stopped")
    assert stopped["level"] == "info"
    assert await serve.proc.wait() == 0
    log_lines = [line for line in serve.lines if line.startswith("{")]
    assert len(log_lines) == len(serve.lines) - 2  # the message and the token
    assert token not in "".join(log_lines)
    access = [json.loads(line) for line in serve.lines if '"http_request"' in line]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("GET", "/api/tags", 401),
        ("POST", "/api/chat", 200),
    ]
    assert access[1]["key_id"] == TOKEN_RE.fullmatch(token).group(1)  # type: ignore[union-attr]


async def test_sighup_reloads_the_key_store(
    serve: ServeProcess, make_key, secrets_seen: Secrets
) -> None:
    """With polling effectively off, SIGHUP alone makes a new key usable."""
    secrets_seen.add(first_token(serve))
    created = make_key("late")
    headers = {"Authorization": f"Bearer {created.token}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{serve.url}/api/tags", headers=headers) as resp:
            assert resp.status == HTTPStatus.UNAUTHORIZED
        serve.proc.send_signal(signal.SIGHUP)
        await serve.wait_for("keystore_reloaded")
        async with session.get(f"{serve.url}/api/tags", headers=headers) as resp:
            assert resp.status == HTTPStatus.OK


async def test_disconnect_while_model_loads_cancels_upstream(
    serve: ServeProcess, fake: FakeOllama, secrets_seen: Secrets
) -> None:
    """In the real server, a client leaving before headers closes the upstream."""
    token = first_token(serve)
    secrets_seen.add(token)
    fake.behaviour.header_delay = 30
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await session.post(
                f"{serve.url}/api/generate",
                json={"model": "llama3.2", "prompt": "x"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=0.5),
            )
    left = time.monotonic()
    for _ in range(100):
        if fake.disconnects:
            break
        await asyncio.sleep(0.01)
    assert fake.disconnects, "upstream never saw the disconnect"
    assert fake.disconnects[0] - left < 1.0
    serve.proc.send_signal(signal.SIGTERM)
    assert await serve.proc.wait() == 0
