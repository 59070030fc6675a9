"""Shared fixtures: the fake Ollama, a key store, the proxy app, log capture.

The code they use lives in tests/support; this file holds only fixtures.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer

from authproxy.admin.app import create_admin_app
from authproxy.config.load import load_config
from authproxy.config.model import Config
from authproxy.keys.backend import key_backend
from authproxy.keys.lifecycle import CreatedKey, KeySpec, create_key
from authproxy.keys.record import ALL_SCOPES
from authproxy.keys.store import TOKEN_RE, make_hasher
from authproxy.server import logs
from authproxy.server.httpserver import server_kwargs
from authproxy.server.tls import CertificateReloader
from authproxy.times import Clock, utc_now
from authproxy.web.app import create_app
from tests.support.admin import Stack
from tests.support.audit import USAGE_RECORDS, write_records
from tests.support.auth import bearer_auth
from tests.support.cli import run
from tests.support.clock import WallClock
from tests.support.fake_ollama.server import FakeOllama, create_fake
from tests.support.harness import (
    CHEAP_ARGON2,
    MakeKey,
    ProxyTestServer,
    StartProxy,
    StartReplica,
    nested,
)
from tests.support.logs import LogCapture, Secrets
from tests.support.redis import RedisServer
from tests.support.tls import write_pair

# --- secrets and logs ------------------------------------------------------------


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


@pytest.fixture(autouse=True)
def no_secrets_in_audit(audit_path: Path, secrets_seen: Secrets) -> Iterator[None]:
    """Fail the test if any secret it handled reached the audit log."""
    yield
    if audit_path.exists():
        text = audit_path.read_text()
        for secret in secrets_seen.values:
            assert secret not in text, "a secret reached the audit log"


# --- the fake Ollama ---------------------------------------------------------------


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


# --- configuration and keys ----------------------------------------------------------


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


@pytest.fixture
def config_file(tmp_path: Path, overrides: dict[str, Any]) -> Path:
    """The test's overrides written as a YAML config file, for the CLI."""
    path = tmp_path / "authproxy.yaml"
    path.write_text(yaml.safe_dump(nested(overrides)), encoding="utf-8")
    return path


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
def bearer(token: str) -> dict[str, str]:
    return bearer_auth(token)


# --- the proxy and its admin API ------------------------------------------------


@pytest.fixture
def proxy_app(config: Config, key: CreatedKey) -> web.Application:
    return create_app(config)


@pytest.fixture
async def proxy(
    aiohttp_client: AiohttpClient, proxy_app: web.Application, config: Config
) -> TestClient[web.Request, None]:
    """The proxy app on a real socket, with the production server settings."""
    return await aiohttp_client(ProxyTestServer(proxy_app, config))


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
def clock() -> WallClock:
    """The clock ``stack`` runs on; tests move it by hand."""
    return WallClock()


@pytest.fixture
async def stack(
    start_proxy: Any,
    aiohttp_client: AiohttpClient,
    make_key: MakeKey,
    clock: WallClock,
    secrets_seen: Secrets,
) -> Stack:
    """A proxy and its admin API on ``clock``, with an admin key named ops."""
    ops = make_key("ops", scopes=["admin"])
    assert ops.token is not None
    proxy = await start_proxy(clock=clock)
    admin = await aiohttp_client(create_admin_app(proxy.app, clock=clock))
    return Stack(proxy, admin, ops.token, clock, secrets_seen)


# --- the command line --------------------------------------------------------------


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], config_file: Path, secrets_seen: Secrets
) -> Callable[..., tuple[int, str, str]]:
    """Run `authproxy <args> --config <test config>`; remember printed tokens."""

    def call(*args: str) -> tuple[int, str, str]:
        code, out, err = run(capsys, *args, "--config", str(config_file))
        secrets_seen.add(*(m.group(0) for m in TOKEN_RE.finditer(out)))
        return code, out, err

    return call


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    """An audit log holding the usage-report sample records."""
    path = tmp_path / "usage.jsonl"
    write_records(path, USAGE_RECORDS)
    return path


# --- TLS ---------------------------------------------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def leaf(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("127.0.0.1", "localhost")


@pytest.fixture
def pair(leaf: trustme.LeafCert, tmp_path: Path) -> tuple[Path, Path]:
    return write_pair(leaf, tmp_path / "tls")


@pytest.fixture
def tls_overrides(overrides: dict[str, Any], pair: tuple[Path, Path]) -> dict[str, Any]:
    return {**overrides, "tls.cert": str(pair[0]), "tls.key": str(pair[1])}


@pytest.fixture
def client_cas(tmp_path: Path) -> tuple[trustme.CA, Path]:
    """A CA for client certificates, written as the tls.client_ca bundle."""
    clients = trustme.CA()
    path = tmp_path / "clients.pem"
    path.write_bytes(clients.cert_pem.bytes())
    return clients, path


@pytest.fixture
def start_https(
    aiohttp_server: AiohttpServer, tls_overrides: dict[str, Any], key: Any
) -> Callable[..., Awaitable[Any]]:
    """Start the real proxy app in-process behind the real TLS context."""

    async def start(extra: dict[str, Any] | None = None) -> Any:
        cfg = load_config(None, {**tls_overrides, **(extra or {})})
        reloader = CertificateReloader(cfg.tls)
        return await aiohttp_server(
            create_app(cfg), ssl=reloader.context, **server_kwargs(cfg)
        )

    return start


# --- Redis (state.backend: redis) ----------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free port, killed after the test."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.close()


@pytest.fixture
def redis_overrides(
    overrides: dict[str, Any], redis_server: RedisServer
) -> dict[str, Any]:
    """The test's overrides with the key store in ``redis_server``."""
    return {
        **overrides,
        "state.backend": "redis",
        "state.redis_url": redis_server.url,
        "state.stale_after": 0.5,
    }


@pytest.fixture
def start_replica(aiohttp_client: AiohttpClient, secrets_seen: Secrets) -> StartReplica:
    """Start replicas: a proxy and its admin API on a clock of their own."""

    async def start(settings: dict[str, Any], admin_token: str) -> Stack:
        config = load_config(None, settings)
        clock = WallClock()
        proxy: TestClient[Any, Any] = await aiohttp_client(
            ProxyTestServer(create_app(config, clock=clock), config)
        )
        admin = await aiohttp_client(create_admin_app(proxy.app, clock=clock))
        return Stack(proxy, admin, admin_token, clock, secrets_seen)

    return start


@pytest.fixture
def make_redis_key(redis_overrides: dict[str, Any], secrets_seen: Secrets) -> MakeKey:
    """Create a key in Redis through the same code path as the CLI."""
    config = load_config(None, redis_overrides)

    def make(name: str, **kwargs: Any) -> CreatedKey:
        created = create_key(
            key_backend(config).store,
            make_hasher(config.keys.argon2),
            KeySpec(name=name, **kwargs),
            now=utc_now(),
        )
        secrets_seen.add(created.token, created.record.hash)
        return created

    return make
