"""Shared fixtures: the fake Ollama, a key store, the proxy app, log capture."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from authproxy.config.load import load_config
from authproxy.config.model import Config
from authproxy.keys.lifecycle import CreatedKey, KeySpec, create_key
from authproxy.keys.record import ALL_SCOPES
from authproxy.keys.store import make_hasher
from authproxy.server import logs
from authproxy.server.httpserver import GuardedAppRunner, server_kwargs
from authproxy.times import Clock, utc_now
from authproxy.web.app import create_app
from tests.support.fake_ollama.server import FakeOllama, create_fake

# argon2's CHEAPEST profile: tests exercise the real code path, fast.
CHEAP_ARGON2 = {
    "keys.argon2.time_cost": 1,
    "keys.argon2.memory_cost": 8,
    "keys.argon2.parallelism": 1,
}


@dataclass
class Secrets:
    """Every secret a test handled; none may appear in any log line."""

    values: list[str] = field(default_factory=list)

    def add(self, *values: str | None) -> None:
        self.values.extend(v for v in values if v)


@dataclass
class LogCapture:
    """The JSON log lines written during a test."""

    stream: io.StringIO

    def lines(self) -> list[dict[str, Any]]:
        return [
            json.loads(line) for line in self.stream.getvalue().splitlines() if line
        ]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]


@pytest.fixture
def secrets_seen() -> Secrets:
    return Secrets()


@pytest.fixture(autouse=True)
def log_capture(secrets_seen: Secrets) -> Iterator[LogCapture]:
    """Capture all logs as JSON and fail the test if a secret shows up in them."""
    stream = io.StringIO()
    logs.configure(fmt="json", level="debug", stream=stream)
    capture = LogCapture(stream)
    yield capture
    text = stream.getvalue()
    for secret in secrets_seen.values:
        assert secret not in text, "a secret reached the logs"


@pytest.fixture
def fake() -> FakeOllama:
    return FakeOllama()


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer, fake: FakeOllama) -> TestServer:
    # Ollama cancels a request's work when its client goes away; so does the fake.
    # (aiohttp's test server always runs with handler_cancellation=True.)
    # Record request bodies as sent: Ollama decodes only zstd on /v1 itself.
    return await aiohttp_server(
        create_fake(fake), auto_decompress=False, access_log=None
    )


@pytest.fixture
def keys_path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "keys.yaml"


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "usage.jsonl"


@pytest.fixture
def overrides(
    upstream: TestServer, keys_path: Path, audit_path: Path
) -> dict[str, Any]:
    """Dotted config overrides; tests may add to them before ``proxy`` starts."""
    return {
        "upstream.url": str(upstream.make_url("")).rstrip("/"),
        "keys.file": str(keys_path),
        "audit.file": str(audit_path),
        "audit.admin_file": str(audit_path.with_name("admin.jsonl")),
        "admin.listen": "127.0.0.1:0",
        **CHEAP_ARGON2,
    }


@pytest.fixture
def config(overrides: dict[str, Any]) -> Config:
    return load_config(None, overrides)


MakeKey = Callable[..., CreatedKey]


@pytest.fixture
def make_key(config: Config, keys_path: Path, secrets_seen: Secrets) -> MakeKey:
    """Create a key in the store through the same code path as the CLI."""

    def make(name: str = "alice", **kwargs: Any) -> CreatedKey:
        created = create_key(
            keys_path,
            make_hasher(config.keys.argon2),
            KeySpec(name=name, **kwargs),
            now=utc_now(),
        )
        secrets_seen.add(created.token, kwargs.get("password"), created.record.hash)
        return created

    return make


@pytest.fixture
def key(make_key: MakeKey) -> CreatedKey:
    """A token key named alice with every scope, created before the proxy starts."""
    return make_key("alice", scopes=ALL_SCOPES)


@pytest.fixture
def token(key: CreatedKey) -> str:
    assert key.token is not None
    return key.token


@pytest.fixture
def proxy_app(config: Config, key: CreatedKey) -> web.Application:
    return create_app(config)


class ProxyTestServer(TestServer):
    """aiohttp's test server running the production runner (``GuardedAppRunner``)."""

    def __init__(self, app: web.Application, config: Config) -> None:
        super().__init__(app)
        self.config = config

    async def _make_runner(self, **kwargs: Any) -> GuardedAppRunner:
        kwargs.update(server_kwargs(self.config))
        return GuardedAppRunner(
            self.app, header_timeout=self.config.limits.header_timeout, **kwargs
        )


@pytest.fixture
async def proxy(
    aiohttp_client: AiohttpClient, proxy_app: web.Application, config: Config
) -> TestClient[web.Request, None]:
    """The proxy app on a real socket, with the production server settings."""
    return await aiohttp_client(ProxyTestServer(proxy_app, config))


StartProxy = Callable[..., Awaitable[TestClient[web.Request, None]]]


@pytest.fixture
def start_proxy(
    aiohttp_client: AiohttpClient, overrides: dict[str, Any], key: CreatedKey
) -> StartProxy:
    """Start another proxy with extra config overrides (and an optional clock)."""

    async def start(
        extra: dict[str, Any] | None = None, clock: Clock | None = None
    ) -> TestClient[web.Request, None]:
        cfg = load_config(None, {**overrides, **(extra or {})})
        app = create_app(cfg, clock=clock) if clock else create_app(cfg)
        return await aiohttp_client(ProxyTestServer(app, cfg))

    return start


@pytest.fixture
def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def closed_port() -> int:
    """Return a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_chunks(response: Any) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_any():
        yield chunk


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted overrides into the nested mapping a YAML file holds."""
    result: dict[str, Any] = {}
    for key, value in dotted.items():
        node = result
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


@pytest.fixture
def config_file(tmp_path: Path, overrides: dict[str, Any]) -> Path:
    """The test's overrides written as a YAML config file, for the CLI."""
    path = tmp_path / "authproxy.yaml"
    path.write_text(yaml.safe_dump(nested(overrides)), encoding="utf-8")
    return path


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Return the audit records written so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines() if line]


async def poll_until(
    condition: Callable[[], object], within: float = 2.0, interval: float = 0.01
) -> None:
    """Poll ``condition`` until true or ``within`` seconds pass (callers assert)."""
    for _ in range(round(within / interval)):
        if condition():
            return
        await asyncio.sleep(interval)


async def wait_audit(path: Path, count: int) -> list[dict[str, Any]]:
    """Wait (up to 2 s) until ``count`` audit records exist; return them."""
    await poll_until(lambda: len(read_audit(path)) >= count)
    return read_audit(path)


async def upstream_saw_disconnect(fake: FakeOllama, left: float) -> None:
    """Assert the fake upstream saw its request closed within 1 s of ``left``."""
    await poll_until(lambda: fake.disconnects, within=1.0)
    assert fake.disconnects, "upstream never saw the disconnect"
    assert fake.disconnects[0] - left < 1.0


@pytest.fixture(autouse=True)
def no_secrets_in_audit(audit_path: Path, secrets_seen: Secrets) -> Iterator[None]:
    """Fail the test if any secret it handled reached the audit log."""
    yield
    if audit_path.exists():
        text = audit_path.read_text()
        for secret in secrets_seen.values:
            assert secret not in text, "a secret reached the audit log"
