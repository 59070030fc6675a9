"""Typed application and request keys of the proxy application.

Only the web, admin, server and cli layers know these; everything below them
gets what it needs as arguments. The types are imported for real: nothing
below this module imports it, so there is no cycle to hide.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from authproxy.auth.bruteforce import FailureLimiter
from authproxy.auth.verify import Verifier
from authproxy.config.model import Config
from authproxy.keys.backend import KeyBackend
from authproxy.keys.feed import KeyFeed
from authproxy.keys.watch import KeyStoreWatcher
from authproxy.limits.admission import LocalAdmission
from authproxy.limits.quotas import KeyLimiter
from authproxy.limits.shared import SharedAdmission
from authproxy.metering.audit import AuditWriter
from authproxy.metering.exchange import Exchange
from authproxy.metering.fleet import FleetUsage
from authproxy.metering.metrics import Metrics
from authproxy.metering.recent import RecentRequests
from authproxy.proxy.upstream import Forwarding, Upstream
from authproxy.times import Clock
from authproxy.web.finish import Finisher


@dataclass(slots=True)
class Lifecycle:
    """Mutable server state that outlives the frozen application."""

    stopping: bool = False


CONFIG_KEY: Final = web.AppKey("config", Config)
CLOCK_KEY: Final = web.AppKey[Clock]("clock")
UPSTREAM_KEY: Final = web.AppKey("upstream", Upstream)
FORWARDING_KEY: Final = web.AppKey("forwarding", Forwarding)
VERIFIER_KEY: Final = web.AppKey("verifier", Verifier)
# The file's watcher, or the Redis change feed (state.backend: redis).
WATCHER_KEY: Final = web.AppKey[KeyStoreWatcher | KeyFeed]("keystore_watcher")
KEY_BACKEND_KEY: Final = web.AppKey("key_backend", KeyBackend)
AUDIT_KEY: Final = web.AppKey("audit", AuditWriter)
BRUTE_FORCE_KEY: Final = web.AppKey("brute_force", FailureLimiter)
KEY_LIMITS_KEY: Final = web.AppKey("key_limits", KeyLimiter)
# The per-key limits the pipeline admits by: this process's, or Redis's.
ADMISSION_KEY: Final = web.AppKey[LocalAdmission | SharedAdmission]("admission")
METRICS_KEY: Final = web.AppKey("metrics", Metrics)
# The fleet's usage counters in Redis (state.backend: redis only).
FLEET_USAGE_KEY: Final = web.AppKey("fleet_usage", FleetUsage)
LIFECYCLE_KEY: Final = web.AppKey("lifecycle", Lifecycle)
# The last requests this process finished (the console's live page).
RECENT_KEY: Final = web.AppKey("recent", RecentRequests)
# Records finished requests a loop turn at a time (web.finish).
FINISHER_KEY: Final = web.AppKey("finisher", Finisher)
STREAMS_KEY: Final = web.AppKey("streams", weakref.WeakSet[web.StreamResponse])

REQUEST_ID_KEY: Final = web.RequestKey("request_id", str)
EXCHANGE_KEY: Final = web.RequestKey("exchange", Exchange)
