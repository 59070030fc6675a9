"""`authproxy serve` as a real process: bootstrap, proxying, SIGHUP, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from authproxy.keys.store import TOKEN_RE
from authproxy.metering.chain import verify_files
from tests.support.audit import read_audit, wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.logs import Secrets
from tests.support.payloads import GENERATE, chat
from tests.support.polling import upstream_saw_disconnect
from tests.support.serving import ServeProcess, first_token

StartServe = Callable[..., Awaitable[ServeProcess]]


@pytest.fixture
async def start_serve(
    tmp_path: Path, overrides: dict[str, Any], secrets_seen: Secrets
) -> AsyncIterator[StartServe]:
    """Start `authproxy serve` processes on free ports, with no key store yet."""
    started: list[ServeProcess] = []

    async def start(*flags: str) -> ServeProcess:
        config = {**overrides, "keys.reload_interval": "1h", "log.format": "json"}
        server = await ServeProcess.spawn(config, tmp_path / "serve.yaml", *flags)
        started.append(server)
        await server.until_started()
        return server

    yield start
    for server in started:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()
        output = "".join(server.lines)
        for secret in secrets_seen.values:
            assert output.count(secret) <= 1, "a secret was printed more than once"


@pytest.fixture
async def serve(start_serve: StartServe) -> ServeProcess:
    """One `authproxy serve` process."""
    return await start_serve()


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
            json=chat("x"),
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
                json=GENERATE,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=0.5),
            )
    left = time.monotonic()
    await upstream_saw_disconnect(fake, left)
    serve.proc.send_signal(signal.SIGTERM)
    assert await serve.proc.wait() == 0


async def test_sighup_reopens_the_audit_log(
    serve: ServeProcess, audit_path: Path, secrets_seen: Secrets
) -> None:
    """logrotate moves the file; after SIGHUP a new file continues the chain."""
    token = first_token(serve)
    secrets_seen.add(token)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as session:
        await (await session.get(f"{serve.url}/api/tags", headers=headers)).read()
        await wait_audit(audit_path, 1)
        rotated = audit_path.with_name("usage.jsonl.1")
        audit_path.rename(rotated)
        serve.proc.send_signal(signal.SIGHUP)
        await serve.wait_for("audit_reopened")
        await (await session.get(f"{serve.url}/api/tags", headers=headers)).read()
    (record,) = await wait_audit(audit_path, 1)
    assert record["seq"] == 2
    assert verify_files([rotated, audit_path]).records == 2


async def test_audit_to_stdout(start_serve: StartServe, secrets_seen: Secrets) -> None:
    """--audit-log - writes the sealed records to standard output."""
    server = await start_serve("--audit-log", "-")
    secrets_seen.add(first_token(server))
    async with aiohttp.ClientSession() as session:
        await session.get(
            f"{server.url}/api/tags", headers={"Authorization": "Bearer x"}
        )
    assert server.proc.stdout is not None
    async with asyncio.timeout(5):
        while True:
            raw = await server.proc.stdout.readline()
            server.lines.append(raw.decode())
            if b'"prev_hash"' in raw:
                break
    record = json.loads(raw)
    assert (record["status"], record["outcome"], record["seq"]) == (401, "denied", 1)


async def test_kill_9_under_load_leaves_whole_lines(
    serve: ServeProcess, audit_path: Path, fake: FakeOllama, secrets_seen: Secrets
) -> None:
    """SIGKILL mid-load: every line in the audit file is whole, valid and chained."""
    token = first_token(serve)
    secrets_seen.add(token)
    fake.behaviour.tokens = [f"t{i}" for i in range(20)]
    fake.behaviour.chunk_delay = 0.005
    headers = {"Authorization": f"Bearer {token}"}
    body = GENERATE

    async def one(session: aiohttp.ClientSession) -> None:
        try:
            async with session.post(
                f"{serve.url}/api/generate", json=body, headers=headers
            ) as resp:
                await resp.read()
        except aiohttp.ClientError:
            pass

    async with aiohttp.ClientSession() as session:
        load = [asyncio.create_task(one(session)) for _ in range(300)]
        await wait_audit(audit_path, 20)
        serve.proc.kill()
        await serve.proc.wait()
        await asyncio.gather(*load)
    data = audit_path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.splitlines()
    assert len(lines) >= 20
    assert all(json.loads(line)["outcome"] for line in lines)
    report = verify_files([audit_path])
    assert report.ok, report.error
    assert report.records == len(lines)


async def test_sigterm_lets_open_streams_finish(
    start_serve: StartServe, fake: FakeOllama, audit_path: Path, secrets_seen: Secrets
) -> None:
    """SIGTERM stops accepting, finishes open streams, flushes the audit, exits 0."""
    server = await start_serve()
    token = first_token(server)
    secrets_seen.add(token)
    fake.behaviour.tokens = [f"t{i}" for i in range(15)]
    fake.behaviour.chunk_delay = 0.1
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{server.url}/api/chat",
            json=chat("x"),
            headers={"Authorization": f"Bearer {token}"},
        ) as resp:
            await resp.content.readline()
            server.proc.send_signal(signal.SIGTERM)
            await server.wait_for("server_stopping")
            rest = await resp.read()
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"{server.url}/healthz")
    assert rest.count(b"\n") == 15  # 14 more chunks and the final line
    assert await server.proc.wait() == 0
    (record,) = read_audit(audit_path)
    assert (record["outcome"], record["completion_tokens"]) == ("completed", 4)


async def test_streams_past_the_shutdown_timeout_are_cut(
    start_serve: StartServe,
    overrides: dict[str, Any],
    fake: FakeOllama,
    audit_path: Path,
    secrets_seen: Secrets,
) -> None:
    """A stream still open after server.shutdown_timeout is closed; outcome shutdown."""
    overrides["server.shutdown_timeout"] = "1s"
    server = await start_serve()
    token = first_token(server)
    secrets_seen.add(token)
    fake.behaviour.tokens = [f"t{i}" for i in range(100)]
    fake.behaviour.chunk_delay = 0.1
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{server.url}/api/generate",
            json=GENERATE,
            headers={"Authorization": f"Bearer {token}"},
        )
        await resp.content.readline()
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert await server.proc.wait() == 0
    (record,) = read_audit(audit_path)
    assert record["outcome"] == "shutdown"
    assert record["usage_exact"] is False
    assert fake.disconnects


async def test_admin_listener_serves(
    start_serve: StartServe, secrets_seen: Secrets
) -> None:
    """serve opens the admin API on admin.listen and reports its address."""
    server = await start_serve()
    secrets_seen.add(first_token(server))
    started = next(
        json.loads(line) for line in server.lines if '"server_started"' in line
    )
    (admin,) = started["admin"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{admin}/admin/openapi.json") as resp:
            assert resp.status == 200
        async with session.get(f"http://{admin}/metrics") as resp:
            assert "authproxy_requests_total" in await resp.text()
        async with session.get(f"http://{admin}/admin/keys") as resp:
            assert resp.status == 401
