"""The metrics registry of the proxy application, and its exposition."""

from __future__ import annotations

from aiohttp import web

from authproxy.auth.principal import VerifyStats
from authproxy.config.model import Config
from authproxy.metering.metrics import CONTENT_TYPE, Metrics
from authproxy.web.appkeys import AUDIT_KEY, METRICS_KEY, STREAMS_KEY, VERIFIER_KEY


def setup_metrics(app: web.Application, config: Config) -> None:
    """Create the metrics registry; its live values are read at scrape time."""
    metrics = Metrics(config.metrics)
    app[METRICS_KEY] = metrics

    def audit_counts() -> tuple[int, int] | None:
        writer = app.get(AUDIT_KEY)
        return (writer.errors, writer.dropped) if writer else None

    def verify_stats() -> VerifyStats | None:
        verifier = app.get(VERIFIER_KEY)
        return verifier.stats if verifier else None

    metrics.watch(verify_stats, lambda: len(app[STREAMS_KEY]), audit_counts)


def metrics_response(metrics: Metrics) -> web.Response:
    """Return the Prometheus exposition as a response."""
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})
