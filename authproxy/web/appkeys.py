"""Typed application and request keys: all shared state lives under these."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import web

from authproxy.auth.principal import Principal
from authproxy.auth.verify import Verifier
from authproxy.config.model import Config

if TYPE_CHECKING:
    from authproxy.auth.bruteforce import FailureLimiter  # noqa: F401
    from authproxy.keys.watch import KeyStoreWatcher  # noqa: F401
    from authproxy.limits.quotas import KeyLimiter, Ticket  # noqa: F401
    from authproxy.metering.audit import AuditWriter  # noqa: F401
    from authproxy.metering.exchange import Exchange  # noqa: F401
    from authproxy.metering.metrics import Metrics  # noqa: F401
    from authproxy.proxy.handler import Upstream  # noqa: F401
    from authproxy.times import Clock  # noqa: F401


@dataclass(slots=True)
class Lifecycle:
    """Mutable server state that outlives the frozen application."""

    stopping: bool = False


CONFIG_KEY: Final = web.AppKey("config", Config)
CLOCK_KEY: Final = web.AppKey["Clock"]("clock")
CLIENT_SESSION_KEY: Final = web.AppKey("client_session", aiohttp.ClientSession)
VERIFIER_KEY: Final = web.AppKey("verifier", Verifier)
WATCHER_KEY: Final = web.AppKey["KeyStoreWatcher"]("keystore_watcher")
UPSTREAM_KEY: Final = web.AppKey["Upstream"]("upstream")
AUDIT_KEY: Final = web.AppKey["AuditWriter"]("audit")
BRUTE_FORCE_KEY: Final = web.AppKey["FailureLimiter"]("brute_force")
KEY_LIMITS_KEY: Final = web.AppKey["KeyLimiter"]("key_limits")
METRICS_KEY: Final = web.AppKey["Metrics"]("metrics")

LIFECYCLE_KEY: Final = web.AppKey("lifecycle", Lifecycle)
STREAMS_KEY: Final = web.AppKey("streams", weakref.WeakSet[web.StreamResponse])

REQUEST_ID_KEY: Final = web.RequestKey("request_id", str)
PRINCIPAL_KEY: Final = web.RequestKey("principal", Principal)
EXCHANGE_KEY: Final = web.RequestKey["Exchange"]("exchange")
LIMIT_TICKET_KEY: Final = web.RequestKey["Ticket"]("limit_ticket")
