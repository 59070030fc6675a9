"""metering.metrics: Prometheus metrics after real traffic; labels, no secrets."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from authproxy.admin.app import create_admin_app
from authproxy.config.model import MetricsConfig
from authproxy.metering.metrics import _LATENCY_BUCKETS, Metrics
from tests.support.audit import wait_audit
from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey
from tests.support.payloads import CHAT
from tests.support.polling import poll_until


def sample(text: str, name: str, **labels: str) -> float:
    """Return one sample's value from the exposition text."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        base, _, raw = metric.partition("{")
        got = ",".join(sorted(raw.rstrip("}").split(","))) if raw else ""
        if base == name and got == wanted:
            return float(value)
    raise AssertionError(f"no sample {name}{{{wanted}}}")


async def scrape(admin: Any) -> str:
    resp = await admin.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text: str = await resp.text()
    return text


async def test_metrics_after_traffic(
    proxy, aiohttp_client, bearer, key, fake: FakeOllama, secrets_seen
) -> None:
    """Requests, tokens, auth failures, cache, argon2 and latency are all counted."""
    admin = await aiohttp_client(create_admin_app(proxy.app))
    for _ in range(3):
        await (await proxy.post("/api/chat", json=CHAT, headers=bearer)).read()
    await (await proxy.get("/api/tags", headers=bearer)).read()
    await proxy.get("/api/tags", headers={"Authorization": "Bearer nope"})
    await proxy.get("/api/tags")
    text = await scrape(admin)
    assert (
        sample(text, "authproxy_requests_total", route="inference", status="200") == 3
    )
    assert (
        sample(text, "authproxy_requests_total", route="models:read", status="200") == 1
    )
    assert (
        sample(text, "authproxy_requests_total", route="models:read", status="401") == 2
    )
    assert (
        sample(text, "authproxy_tokens_total", direction="prompt", model="llama3.2")
        == 78
    )
    assert (
        sample(text, "authproxy_tokens_total", direction="completion", model="llama3.2")
        == 12
    )
    assert sample(text, "authproxy_auth_failures_total", reason="malformed") == 1
    assert sample(text, "authproxy_auth_failures_total", reason="missing") == 1
    assert sample(text, "authproxy_verify_cache_total", result="hit") == 3
    assert sample(text, "authproxy_verify_cache_total", result="miss") == 1
    assert sample(text, "authproxy_argon2_verify_seconds_count") == 1
    assert sample(text, "authproxy_upstream_ttfb_seconds_count", route="inference") == 3
    assert (
        sample(text, "authproxy_request_duration_seconds_count", route="inference") == 3
    )
    assert sample(text, "authproxy_active_streams") == 0
    assert sample(text, "authproxy_audit_write_errors_total") == 0
    assert "alice" not in text
    assert key.record.id not in text  # key ids only with metrics.key_labels
    for secret in secrets_seen.values:
        assert secret not in text


async def test_each_scrape_counts_every_request_once(
    proxy, aiohttp_client, bearer
) -> None:
    """Counts stay exact across scrapes: none lost, none added twice."""
    admin = await aiohttp_client(create_admin_app(proxy.app))
    seen = []
    for requests in (2, 0, 3):
        for _ in range(requests):
            await (await proxy.post("/api/chat", json=CHAT, headers=bearer)).read()
            await proxy.get("/api/tags")
        text = await scrape(admin)
        seen.append(
            (
                sample(
                    text, "authproxy_requests_total", route="inference", status="200"
                ),
                sample(text, "authproxy_auth_failures_total", reason="missing"),
                sample(
                    text, "authproxy_tokens_total", direction="prompt", model="llama3.2"
                ),
            )
        )
    assert seen == [(2, 2, 52), (2, 2, 52), (5, 5, 130)]


async def test_active_streams_gauge(
    proxy, aiohttp_client, bearer, fake: FakeOllama
) -> None:
    """A stream being relayed shows in authproxy_active_streams."""
    admin = await aiohttp_client(create_admin_app(proxy.app))
    fake.behaviour.tokens = [f"t{i}" for i in range(30)]
    fake.behaviour.chunk_delay = 0.05
    resp = await proxy.post("/api/chat", json=CHAT, headers=bearer)
    await resp.content.readline()
    assert sample(await scrape(admin), "authproxy_active_streams") == 1
    await resp.read()

    async def idle() -> bool:
        return sample(await scrape(admin), "authproxy_active_streams") == 0

    await poll_until(idle)
    assert sample(await scrape(admin), "authproxy_active_streams") == 0


async def test_key_labels_and_model_cap(
    start_proxy, aiohttp_client, key, make_key: MakeKey
) -> None:
    """With metrics.key_labels, tokens carry the key id; model labels are capped."""
    client = await start_proxy({"metrics.key_labels": True, "metrics.max_models": 1})
    admin = await aiohttp_client(create_admin_app(client.app))
    auth = {"Authorization": f"Bearer {key.token}"}
    await (await client.post("/api/chat", json=CHAT, headers=auth)).read()
    await (
        await client.post("/api/chat", json={**CHAT, "model": "qwen3:8b"}, headers=auth)
    ).read()
    text = await scrape(admin)
    labels = {"direction": "completion", "key_id": key.record.id}
    assert sample(text, "authproxy_tokens_total", model="llama3.2", **labels) == 4
    assert sample(text, "authproxy_tokens_total", model="other", **labels) == 4
    assert "alice" not in text


async def test_denials_by_reason(
    start_proxy, aiohttp_client, make_key: MakeKey
) -> None:
    """Policy refusals are counted apart from authentication failures."""
    limited = make_key("limited", models=["qwen3:*"])
    client = await start_proxy()
    admin = await aiohttp_client(create_admin_app(client.app))
    auth = {"Authorization": f"Bearer {limited.token}"}
    await client.post("/api/chat", json=CHAT, headers=auth)
    await client.post("/api/pull", json={"model": "x"}, headers=auth)
    text = await scrape(admin)
    assert sample(text, "authproxy_denials_total", reason="model_not_allowed") == 1
    assert (
        sample(text, "authproxy_denials_total", reason="missing_scope:models:manage")
        == 1
    )


HUGE = 20 * 1024 * 1024


PROMPT = {"messages": [{"role": "user", "content": "hi"}], "stream": False}


async def test_a_huge_echoed_model_name_stays_small(
    proxy, aiohttp_client, bearer, fake: FakeOllama, audit_path: Path
) -> None:
    """A 20 MB model name in the reply adds only bytes to /metrics and the audit log."""
    admin = await aiohttp_client(create_admin_app(proxy.app))
    resp = await proxy.post("/v1/chat/completions", json=PROMPT, headers=bearer)
    await resp.read()
    before = len(await scrape(admin))
    fake.behaviour.reply_model = "m" * HUGE
    for _ in range(2):
        resp = await proxy.post("/v1/chat/completions", json=PROMPT, headers=bearer)
        assert resp.status == 200
        assert len(await resp.read()) > HUGE  # relayed unchanged
    text = await scrape(admin)
    assert len(text) - before < 512  # the two series labelled "other"
    assert sample(
        text, "authproxy_tokens_total", direction="prompt", model="other"
    ) == (2 * fake.behaviour.prompt_eval_count)
    records = await wait_audit(audit_path, 3)
    assert [r["model"] for r in records[1:]] == ["m" * 256 + f"...[{HUGE} chars]"] * 2
    assert max(len(line) for line in audit_path.read_bytes().splitlines()) < 2048


async def test_a_huge_requested_model_name_stays_small(
    proxy, aiohttp_client, bearer, audit_path: Path
) -> None:
    """A 20 MB model name in the request body costs a few KB, whatever the answer."""
    admin = await aiohttp_client(create_admin_app(proxy.app))
    before = len(await scrape(admin))
    body = json.dumps({**CHAT, "model": "m" * HUGE, "stream": False}).encode()
    headers = {**bearer, "Content-Type": "application/json"}
    for _ in range(2):
        resp = await proxy.post("/api/chat", data=io.BytesIO(body), headers=headers)
        await resp.read()
    assert len(await scrape(admin)) - before < 4096
    records = await wait_audit(audit_path, 2)
    assert len(records) == 2
    assert max(len(line) for line in audit_path.read_bytes().splitlines()) < 2048


def test_route_histograms_expose_what_a_prometheus_histogram_would() -> None:
    """The list-counted latency histograms give prometheus_client's exposition."""
    ours = Metrics(MetricsConfig())
    theirs = CollectorRegistry()
    reference = Histogram(
        "authproxy_request_duration_seconds",
        "Time until the request ended.",
        ["route"],
        buckets=_LATENCY_BUCKETS,
        registry=theirs,
    )
    # Values on bucket bounds count to that bucket (le), and past the last one.
    values = [0.0, 0.005, 0.0051, 0.3, 1.0, 2.5, 599.0, 600.0, 601.0, 1e9]
    for i, value in enumerate(values):
        route = "inference" if i % 3 else "models"
        ours.duration.observe(route, value)
        reference.labels(route).observe(value)

    def lines(registry: CollectorRegistry) -> set[str]:
        text = generate_latest(registry).decode()
        return {
            line
            for line in text.splitlines()
            if line.startswith("authproxy_request_duration_seconds")
            and "_created" not in line
        }

    expected = lines(theirs)
    assert len(expected) == 2 * (len(_LATENCY_BUCKETS) + 3)
    assert lines(ours.registry) == expected
