"""Prometheus metrics: one registry per application, fed once per finished request.

Labels carry route classes, status codes, reasons, model names and, only when
``metrics.key_labels`` is on, key ids. Never a key name, token or anything
secret. Model labels are capped in number and length so clients cannot grow
the series, or one scrape, without bound.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from authproxy.auth.principal import VerifyStats
from authproxy.config.model import MetricsConfig
from authproxy.metering.bounds import MAX_LABEL
from authproxy.metering.exchange import Exchange

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
OTHER_MODEL: Final = "other"
OTHER_REASON: Final = "other"
_LATENCY_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    120,
    300,
    600,
)
_ARGON2_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2)


class _LiveState(Collector):
    """Values read at scrape time from the objects that own them."""

    def __init__(
        self,
        stats: Callable[[], VerifyStats | None],
        streams: Callable[[], int],
        audit: Callable[[], tuple[int, int] | None],
    ) -> None:
        self._stats = stats
        self._streams = streams
        self._audit = audit

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Yield the cache, stream and audit metrics."""
        stats = self._stats()
        if stats is not None:
            cache = CounterMetricFamily(
                "authproxy_verify_cache",
                "Verification cache lookups.",
                labels=["result"],
            )
            cache.add_metric(["hit"], stats.cache_hits)
            cache.add_metric(["miss"], stats.cache_misses)
            yield cache
            yield CounterMetricFamily(
                "authproxy_argon2_verifications",
                "argon2 verifications run.",
                value=stats.argon2_verifications,
            )
        yield GaugeMetricFamily(
            "authproxy_active_streams",
            "Responses being relayed now.",
            value=self._streams(),
        )
        audit = self._audit()
        if audit is not None:
            yield CounterMetricFamily(
                "authproxy_audit_write_errors", "Failed audit writes.", value=audit[0]
            )
            yield CounterMetricFamily(
                "authproxy_audit_records_dropped",
                "Audit records dropped past the backlog.",
                value=audit[1],
            )


class _RouteHistogram(Collector):
    """A histogram by route, counted in plain lists and exposed at scrape time.

    A prometheus_client ``Histogram`` takes a lock and walks its buckets on
    every ``observe``; two of them per request cost more than the rest of the
    metrics together. Here an observation is one bisect and two additions on
    the event loop's thread (the only writer), and the scrape builds the
    same exposition (``_bucket`` with ``le``, ``_sum``, ``_count``).
    """

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]):
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        # route -> [count per bucket (the last one +Inf)], and the sums.
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, route: str, value: float) -> None:
        """Count one observation (``le`` buckets: value <= bound)."""
        counts = self._counts.get(route)
        if counts is None:
            counts = self._counts[route] = [0] * (len(self.bounds) + 1)
            self._sums[route] = 0.0
        counts[bisect_left(self.bounds, value)] += 1
        self._sums[route] += value

    def describe(self) -> list[HistogramMetricFamily]:
        """Name the metric, with no samples yet."""
        return [HistogramMetricFamily(self.name, self.documentation, labels=["route"])]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        """Yield the histogram with cumulative buckets per route."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=["route"])
        for route, counts in list(self._counts.items()):
            buckets, total = [], 0
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                total += count
                buckets.append((_le(bound), total))
            family.add_metric([route], buckets, sum_value=self._sums[route])
        yield family


def _le(bound: float) -> str:
    """Format a bucket bound as prometheus_client does (``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


class _Pending(Collector):
    """Adds the counts gathered since the last read, before any metric is read.

    Registered first, so the registry collects it before the counters.
    """

    def __init__(self, flush: Callable[[], None]) -> None:
        self._flush = flush

    def describe(self) -> list[Any]:
        """Name no metric of its own."""
        return []

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Flush the pending counts; yield nothing."""
        self._flush()
        return iter(())


class Metrics:
    """The proxy's metrics and their registry.

    A request's counter increments are summed in a plain dict and added to
    the counters when the registry is read (a scrape): a counter's ``inc``
    takes a lock, three times per request. The two latency histograms count
    in plain lists (``_RouteHistogram``); argon2's, rarely fed, is a
    prometheus_client ``Histogram``.
    """

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry()
        self._models: set[str] = set()
        self._children: dict[tuple[Any, ...], Any] = {}
        self._pending: dict[Any, float] = {}
        r = self.registry
        r.register(_Pending(self.flush))
        self.requests = Counter(
            "authproxy_requests",
            "Requests by route class and status.",
            ["route", "status"],
            registry=r,
        )
        key_label = ["key_id"] if config.key_labels else []
        self.tokens = Counter(
            "authproxy_tokens",
            "Tokens by direction and model.",
            ["direction", "model", *key_label],
            registry=r,
        )
        self.auth_failures = Counter(
            "authproxy_auth_failures",
            "Failed authentications by reason.",
            ["reason"],
            registry=r,
        )
        self.denials = Counter(
            "authproxy_denials",
            "Authenticated requests refused (scope, model, limits) by reason.",
            ["reason"],
            registry=r,
        )
        self.usage_count_failures = Counter(
            "authproxy_usage_counter_failures",
            "Requests the fleet's usage counters in Redis missed (Redis failed).",
            registry=r,
        )
        self.argon2_seconds = Histogram(
            "authproxy_argon2_verify_seconds",
            "Time of one argon2 verification.",
            buckets=_ARGON2_BUCKETS,
            registry=r,
        )
        self.ttfb = _RouteHistogram(
            "authproxy_upstream_ttfb_seconds",
            "Time until the response headers.",
            _LATENCY_BUCKETS,
        )
        self.duration = _RouteHistogram(
            "authproxy_request_duration_seconds",
            "Time until the request ended.",
            _LATENCY_BUCKETS,
        )
        r.register(self.ttfb)
        r.register(self.duration)

    def watch(
        self,
        stats: Callable[[], VerifyStats | None],
        streams: Callable[[], int],
        audit: Callable[[], tuple[int, int] | None],
    ) -> None:
        """Register the scrape-time collector."""
        self.registry.register(_LiveState(stats, streams, audit))

    def observe(self, ex: Exchange, duration: float) -> None:
        """Count one finished request."""
        principal = ex.principal
        route = ex.route_class.value
        self._count(self._child(self.requests, route, str(ex.status or 0)), 1)
        self.duration.observe(route, duration)
        if ex.ttfb is not None:
            self.ttfb.observe(route, ex.ttfb)
        if ex.outcome == "denied" and ex.reason:
            counter = self.auth_failures if ex.status == 401 else self.denials
            reason = ex.reason if len(ex.reason) <= MAX_LABEL else OTHER_REASON
            self._count(self._child(counter, reason), 1)
            return
        prompt, completion, _ = ex.tokens()
        if not prompt and not completion:
            return
        model = self._model_label(ex.model or (ex.usage.model if ex.usage else None))
        extra = (
            [principal.key_id if principal else "-"] if self.config.key_labels else []
        )
        if prompt:
            self._count(self._child(self.tokens, "prompt", model, *extra), prompt)
        if completion:
            completions = self._child(self.tokens, "completion", model, *extra)
            self._count(completions, completion)

    def _count(self, child: Any, amount: float) -> None:
        pending = self._pending
        pending[child] = pending.get(child, 0) + amount

    def flush(self) -> None:
        """Add the pending counts to their counters (the registry calls it)."""
        pending, self._pending = self._pending, {}
        for child, amount in pending.items():
            child.inc(amount)

    def _child(self, metric: Any, *labels: str) -> Any:
        # labels() takes a lock and builds a key on every call; a request
        # touches the same few children over and over, so keep them.
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _model_label(self, model: str | None) -> str:
        if not model:
            return "-"
        if model in self._models:
            return model
        # An over-long name is not cut (cuts could collide with real names)
        # and takes no place among the max_models distinct labels.
        if len(model) > MAX_LABEL or len(self._models) >= self.config.max_models:
            return OTHER_MODEL
        self._models.add(model)
        return model

    def render(self) -> bytes:
        """Return the Prometheus text exposition."""
        return generate_latest(self.registry)
