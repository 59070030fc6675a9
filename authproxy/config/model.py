"""Frozen configuration dataclasses: every option, its default and its check."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authproxy.config.console import ConsoleConfig
from authproxy.config.hosts import host_patterns
from authproxy.config.replica import replica_option
from authproxy.config.schema import (
    cors_origins,
    option,
    process_count,
    root_path,
    seconds,
    section,
    size,
    upstream_url,
)
from authproxy.config.state import StateConfig
from authproxy.errors import ConfigError


def _port(value: int) -> bool:
    return 0 <= value <= 65535


def _positive(value: float) -> bool:
    return value > 0


def _networks(value: Any) -> tuple[str, ...]:
    """Validate a list of IP addresses or CIDR ranges."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError("expected a list of IP addresses or CIDR ranges")
    try:
        return tuple(str(ipaddress.ip_network(v.strip(), strict=False)) for v in items)
    except ValueError:
        raise ValueError("expected a list of IP addresses or CIDR ranges") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenConfig:
    """Where the proxy accepts client connections."""

    host: str = option("127.0.0.1")
    port: int = option(11435, check=(_port, "int in 0..65535"))


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConfig:
    """The one Ollama server requests are forwarded to."""

    url: str = option("http://127.0.0.1:11434", parse=upstream_url)
    host_header: str | None = option(None)
    connect_timeout: float = option(10.0, parse=seconds)
    response_timeout: float = option(600.0, parse=seconds)
    idle_timeout: float = option(600.0, parse=seconds)
    max_connections: int = option(256, check=(_positive, "int > 0"))
    # proxy.replypoll: how long the lean client polls for a reply head.
    reply_poll_us: int = option(
        100, check=(lambda v: 0 <= v <= 10_000, "int in 0..10000 (microseconds)")
    )
    client: str = option(
        "lean", check=(lambda v: v in {"lean", "aiohttp"}, "lean|aiohttp")
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Argon2Config:
    """argon2id parameters for new hashes; old hashes are upgraded on use."""

    time_cost: int = option(3, check=(_positive, "int > 0"))
    memory_cost: int = option(65536, check=(lambda v: v >= 8, "int >= 8 (KiB)"))
    parallelism: int = option(4, check=(_positive, "int > 0"))


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysConfig:
    """The key store and how credentials are verified."""

    file: str = option("keys/keys.yaml")
    reload_interval: float = option(1.0, parse=seconds, check=(_positive, "> 0"))
    cache_ttl: float = option(300.0, parse=seconds)
    cache_size: int = option(10000, check=(_positive, "int > 0"))
    verify_workers: int | None = option(None, check=(_positive, "int > 0"))
    verify_queue: int = option(64, check=(lambda v: v >= 0, "int >= 0"))
    signature_window: float = option(300.0, parse=seconds, check=(_positive, "> 0"))
    argon2: Argon2Config = section(Argon2Config)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """HTTP server behaviour of the public listener."""

    # The name audit records and the admin trail give this replica; None:
    # the host name (in Kubernetes, the pod name).
    replica: str | None = option(None, parse=replica_option)
    max_body_size: int = option(100 * 1024**2, parse=size)
    shutdown_timeout: float = option(30.0, parse=seconds)
    keepalive_timeout: float = option(75.0, parse=seconds)
    backlog: int = option(1024, check=(_positive, "int > 0"))
    trusted_proxies: tuple[str, ...] = option((), parse=_networks)
    # What serves the proxy listener's connections: "lean" (server.leanfront:
    # plainly shaped requests without aiohttp's Request, all others handed
    # to aiohttp) or "aiohttp" (aiohttp's handler for every request).
    front: str = option(
        "lean", check=(lambda v: v in {"lean", "aiohttp"}, "lean|aiohttp")
    )
    event_loop: str = option(
        "auto",
        check=(lambda v: v in {"auto", "uvloop", "asyncio"}, "auto|uvloop|asyncio"),
    )
    # A prefix an ingress adds (/ollama): stripped before routing, like
    # uvicorn's --root-path; requests outside it get 404.
    root_path: str = option("", parse=root_path)
    # Processes sharing the listeners (SO_REUSEPORT) under one supervisor.
    workers: int = option(1, parse=process_count)


@dataclass(frozen=True, slots=True, kw_only=True)
class CorsConfig:
    """Browser clients from other origins (empty: no CORS, Ollama's origins apply)."""

    origins: str = option("", parse=cors_origins)


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    """Abuse resistance: brute-force blocking, HTTP parser limits, limit state."""

    auth_failures: int = option(20, check=(lambda v: v >= 0, "int >= 0"))
    auth_window: float = option(60.0, parse=seconds, check=(_positive, "> 0"))
    auth_cooldown: float = option(300.0, parse=seconds)
    tracked_clients: int = option(100_000, check=(_positive, "int > 0"))
    max_request_line: int = option(8190, parse=size, check=(_positive, "> 0"))
    max_header_size: int = option(8190, parse=size, check=(_positive, "> 0"))
    max_headers: int = option(100, check=(_positive, "int > 0"))
    header_timeout: float = option(10.0, parse=seconds)
    body_idle_timeout: float = option(60.0, parse=seconds)
    state_file: str | None = option(None)
    state_interval: float = option(10.0, parse=seconds, check=(_positive, "> 0"))
    # Tokens a quota reserves for the output of a request that sets no cap:
    # Ollama then generates until the context is full, 4096 by default.
    default_output_reservation: int = option(4096, check=(lambda v: v >= 0, "int >= 0"))


def _path(value: Any) -> str | None:
    """Validate an optional file path; empty means unset."""
    if not isinstance(value, str):
        raise ValueError("expected a file path")
    return value or None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditConfig:
    """The audit log: one sealed JSON line per request."""

    enabled: bool = option(True)
    file: str = option("audit/usage.jsonl")
    required: bool = option(False)
    max_bytes: int = option(0, parse=size)
    backups: int = option(5, check=(_positive, "int > 0"))
    backlog: int = option(10000, check=(_positive, "int > 0"))
    openai_include_usage: bool = option(False)
    # None: admin.jsonl beside ``file`` (see ``admin_trail_file``).
    admin_file: str | None = option(None, parse=_path)


def _listen_address(value: Any) -> str:
    """Validate ``HOST:PORT`` (or empty to disable)."""
    if not isinstance(value, str):
        raise ValueError("expected HOST:PORT or an empty string")
    if value == "":
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
        raise ValueError("expected HOST:PORT such as 127.0.0.1:11436")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class AdminConfig:
    """The admin API (and /metrics) listener."""

    listen: str = option("127.0.0.1:11436", parse=_listen_address)
    allowed_hosts: tuple[str, ...] = option((), parse=host_patterns)
    idempotency_ttl: float = option(86400.0, parse=seconds)
    console: ConsoleConfig = section(ConsoleConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """HTTPS on the public listener (off while ``cert`` is unset)."""

    cert: str | None = option(None, parse=_path)
    key: str | None = option(None, parse=_path)
    client_ca: str | None = option(None, parse=_path)
    min_version: str = option(
        "TLSv1.2", check=(lambda v: v in {"TLSv1.2", "TLSv1.3"}, "TLSv1.2|TLSv1.3")
    )
    reload_interval: float = option(1.0, parse=seconds, check=(_positive, "> 0"))
    redirect_listen: str = option("", parse=_listen_address)

    def __post_init__(self) -> None:
        # Half a TLS set-up must not quietly fall back to plain HTTP.
        if self.cert and not self.key:
            raise ConfigError("tls.key: required when tls.cert is set")
        if self.key and not self.cert:
            raise ConfigError("tls.cert: required when tls.key is set")
        for name in ("client_ca", "redirect_listen"):
            if getattr(self, name) and not self.cert:
                raise ConfigError(f"tls.cert: required when tls.{name} is set")


@dataclass(frozen=True, slots=True, kw_only=True)
class JWTConfig:
    """Signing keys for short-lived JWTs; never inline secrets."""

    key_file: str | None = option(None)
    key_env: str | None = option(None)
    previous_key_env: str | None = option(None)
    max_ttl: float = option(86400.0, parse=seconds, check=(_positive, "> 0"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """Prometheus metrics (on the admin listener)."""

    public: bool = option(False)
    key_labels: bool = option(False)
    max_models: int = option(100, check=(_positive, "int > 0"))


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """Operational logging."""

    format: str = option(
        "auto", check=(lambda v: v in {"auto", "json", "console"}, "auto|json|console")
    )
    access: bool = option(True)
    level: str = option(
        "info",
        check=(
            lambda v: v in {"debug", "info", "warning", "error"},
            "debug|info|warning|error",
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration."""

    listen: ListenConfig = section(ListenConfig)
    upstream: UpstreamConfig = section(UpstreamConfig)
    keys: KeysConfig = section(KeysConfig)
    server: ServerConfig = section(ServerConfig)
    cors: CorsConfig = section(CorsConfig)
    limits: LimitsConfig = section(LimitsConfig)
    tls: TLSConfig = section(TLSConfig)
    audit: AuditConfig = section(AuditConfig)
    admin: AdminConfig = section(AdminConfig)
    jwt: JWTConfig = section(JWTConfig)
    metrics: MetricsConfig = section(MetricsConfig)
    log: LogConfig = section(LogConfig)
    state: StateConfig = section(StateConfig)

    def __post_init__(self) -> None:
        # The file backend counts limits per process: each worker would admit
        # a key's whole limit.
        if self.server.workers > 1 and self.state.backend != "redis":
            raise ConfigError(
                "server.workers > 1 needs state.backend: redis, "
                "because limits must stay exact"
            )


def signing_key_file(config: Config) -> Path:
    """Return ``jwt.key_file``, by default ``jwt-signing.yaml`` beside the key store."""
    if config.jwt.key_file:
        return Path(config.jwt.key_file)
    return Path(config.keys.file).with_name("jwt-signing.yaml")


def _beside_audit_log(config: Config, name: str) -> Path:
    base = config.audit.file if config.audit.file != "-" else config.keys.file
    return Path(base).with_name(name)


def limits_state_file(config: Config) -> Path:
    """Return ``limits.state_file``, by default beside the audit log (or key store)."""
    if config.limits.state_file:
        return Path(config.limits.state_file)
    return _beside_audit_log(config, "limits-state.json")


def admin_trail_file(config: Config) -> Path:
    """Return ``audit.admin_file``, by default ``admin.jsonl`` beside the audit log.

    With ``audit.file: "-"`` (standard output) it goes beside the key store.
    """
    if config.audit.admin_file:
        return Path(config.audit.admin_file)
    return _beside_audit_log(config, "admin.jsonl")
