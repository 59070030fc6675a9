"""server.workers: several `authproxy serve` processes on one port, one supervisor.

A real `authproxy serve` with ``server.workers: 2`` and a real ``redis-server``;
its workers' audit files show who answered.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from authproxy.config.load import load_config
from authproxy.server.workers import worker_config, worker_file
from tests.support.auth import bearer_auth
from tests.support.cli import run_process
from tests.support.harness import MakeKey, nested
from tests.support.polling import poll_until
from tests.support.serving import ServeProcess

REQUESTS = 40  # on new connections: all on one worker has odds of 2**-39


def _events(server: ServeProcess, event: str) -> list[dict[str, Any]]:
    found = []
    for line in server.lines:
        if line.startswith("{"):
            data = json.loads(line)
            if data.get("event") == event:
                found.append(data)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def token(make_redis_key: MakeKey) -> str:
    """A key's token, in Redis before the server starts."""
    created = make_redis_key("spread")
    assert created.token is not None
    return created.token


@pytest.fixture
def ops(make_redis_key: MakeKey) -> str:
    """An admin key's token, in Redis before the server starts."""
    created = make_redis_key("ops", scopes=["admin"])
    assert created.token is not None
    return created.token


@pytest.fixture
async def workers(
    tmp_path: Path, redis_overrides: dict[str, Any], token: str, ops: str
) -> AsyncIterator[ServeProcess]:
    """`authproxy serve` with two workers, both started."""
    config = {
        **redis_overrides,
        "server.workers": 2,
        # A worker that does not stop is killed this much (plus 5 s) later.
        "server.shutdown_timeout": "2s",
        "log.format": "json",
    }
    server = await ServeProcess.spawn(config, tmp_path / "workers.yaml")
    server.timeout = 20
    try:
        await server.until_started()
        await server.wait_for("server_started")
        yield server
    finally:
        # The workers first: they hold the output pipe the wait reads to its end.
        for started in _events(server, "worker_started"):
            if _alive(started["pid"]):
                os.kill(started["pid"], signal.SIGKILL)
        if server.proc.returncode is None:
            server.proc.kill()
        await server.proc.wait()


async def _spread(url: str, token: str) -> list[int]:
    """Send ``REQUESTS`` requests, each on a new connection; return the statuses."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        statuses = []
        for _ in range(REQUESTS):
            async with session.get(f"{url}/api/tags", headers=bearer_auth(token)) as r:
                await r.read()
                statuses.append(r.status)
        return statuses


async def test_two_workers_answer_on_one_port(
    workers: ServeProcess, redis_overrides: dict[str, Any], token: str
) -> None:
    """Both workers listen on the one port, and both answer requests on it."""
    started = _events(workers, "server_started")
    assert len(started) == 2
    assert started[0]["listen"] == started[1]["listen"]
    assert len({e["pid"] for e in _events(workers, "worker_started")}) == 2
    assert await _spread(workers.url, token) == [HTTPStatus.OK] * REQUESTS
    audit = Path(redis_overrides["audit.file"])
    files = [worker_file(audit, 1), worker_file(audit, 2)]

    def both_wrote() -> bool:
        return all(f.exists() and f.read_text().strip() for f in files)

    assert await poll_until(both_wrote, within=10), "one worker answered everything"
    assert not audit.exists()


async def test_sigterm_stops_every_worker(workers: ServeProcess) -> None:
    """SIGTERM to the supervisor stops both workers, then it exits 0."""
    pids = [e["pid"] for e in _events(workers, "worker_started")]
    assert all(_alive(pid) for pid in pids)
    workers.proc.send_signal(signal.SIGTERM)
    await workers.wait_for("supervisor_stopped")
    assert await workers.proc.wait() == 0
    assert not any(_alive(pid) for pid in pids)


async def test_a_crashed_worker_is_started_again(
    workers: ServeProcess, token: str
) -> None:
    """A worker killed with kill -9 is started again; the port keeps answering."""
    first = {e["worker"]: e["pid"] for e in _events(workers, "worker_started")}
    os.kill(first[1], signal.SIGKILL)
    exited = await workers.wait_for("worker_exited")
    assert (exited["worker"], exited["exit_code"]) == (1, -signal.SIGKILL)
    again = await workers.wait_for("worker_started")
    assert again["worker"] == 1
    assert again["pid"] != first[1]
    await workers.wait_for("server_started")
    assert await _spread(workers.url, token) == [HTTPStatus.OK] * REQUESTS


def test_the_file_backend_refuses_workers(
    tmp_path: Path, overrides: dict[str, Any]
) -> None:
    """`serve` with workers: 2 and the file backend exits 2 naming the reason."""
    path = tmp_path / "file-workers.yaml"
    path.write_text(yaml.safe_dump(nested({**overrides, "server.workers": 2})))
    done = run_process(tmp_path, "serve", "--config", str(path))
    assert done.returncode == 2
    assert "server.workers > 1 needs state.backend: redis" in done.stderr
    assert "Traceback" not in done.stderr


def test_each_worker_writes_its_own_audit_file(overrides: dict[str, Any]) -> None:
    """Worker 2 gets usage.w2.jsonl and admin.w2.jsonl; standard output stays."""
    config = load_config(None, overrides)
    second = worker_config(config, 2)
    assert Path(second.audit.file).name == "usage.w2.jsonl"
    assert Path(second.audit.admin_file or "").name == "admin.w2.jsonl"
    to_stdout = load_config(None, {**overrides, "audit.file": "-"})
    assert worker_config(to_stdout, 2).audit.file == "-"


def test_a_worker_that_cannot_start_stops_the_server(
    tmp_path: Path, redis_overrides: dict[str, Any]
) -> None:
    """A start-up failure in the workers (no certificate) ends serve with its code."""
    config = {
        **redis_overrides,
        "server.workers": 2,
        "tls.cert": str(tmp_path / "missing.pem"),
        "tls.key": str(tmp_path / "missing.key"),
    }
    path = tmp_path / "no-cert.yaml"
    path.write_text(yaml.safe_dump(nested(config)))
    done = run_process(
        tmp_path, "serve", "--config", str(path), "--listen", "127.0.0.1:0"
    )
    assert done.returncode == 2
    assert "tls.cert: cannot read" in done.stderr
    assert '"event": "worker_started"' in done.stdout


async def test_an_admin_retry_on_either_worker_gets_the_same_reply(
    workers: ServeProcess, ops: str
) -> None:
    """One Idempotency-Key, creates on new connections: one key, one token."""
    admin = f"http://{workers.started['admin'][0]}"
    headers = {**bearer_auth(ops), "Idempotency-Key": "one-create-many-tries"}
    replies = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(8):
            async with session.post(
                f"{admin}/admin/keys", json={"name": "made-once"}, headers=headers
            ) as resp:
                replies.append((resp.status, await resp.json()))
    assert replies[0][0] == HTTPStatus.CREATED
    assert all(reply == replies[0] for reply in replies)
