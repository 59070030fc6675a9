"""metering.exchange: the audit record built from one request's exchange."""

from __future__ import annotations

import random
import socket
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from authproxy.metering.exchange import Exchange, _ms, timestamp
from authproxy.metering.usage import estimate_prompt_tokens, requested_output_tokens
from authproxy.policy.routes import RouteClass
from authproxy.times import format_timestamp
from tests.support.audit import wait_audit
from tests.support.payloads import SAY_HI


async def test_record_schema(proxy, bearer, audit_path: Path) -> None:
    """A record has exactly the documented fields, in order, ending in the chain."""
    await (await proxy.post("/api/chat", json=SAY_HI, headers=bearer)).read()
    (record,) = await wait_audit(audit_path, 1)
    assert list(record) == [
        "ts",
        "request_id",
        "replica",
        "key_id",
        "key_name",
        "scheme",
        "client",
        "method",
        "path",
        "route",
        "model",
        "status",
        "stream",
        "outcome",
        "reason",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "usage_exact",
        "total_duration",
        "load_duration",
        "prompt_eval_duration",
        "eval_duration",
        "ttfb_ms",
        "duration_ms",
        "bytes_in",
        "bytes_out",
        "seq",
        "prev_hash",
        "hash",
    ]
    assert record["ts"].endswith("Z")
    assert record["client"] == "127.0.0.1"
    assert (record["method"], record["path"], record["route"]) == (
        "POST",
        "/api/chat",
        "inference",
    )
    assert 0 < record["ttfb_ms"] <= record["duration_ms"]
    assert record["seq"] == 1
    assert record["prev_hash"] == "0" * 64


async def test_record_names_the_host_by_default(
    proxy, bearer, audit_path: Path
) -> None:
    """Without server.replica, a record's replica is the host name."""
    await (await proxy.get("/api/tags", headers=bearer)).read()
    (record,) = await wait_audit(audit_path, 1)
    assert record["replica"] == socket.gethostname()


async def test_record_names_the_configured_replica(
    start_proxy, bearer, audit_path: Path
) -> None:
    """server.replica is written into every record."""
    proxy = await start_proxy({"server.replica": "pod-7"})
    await (await proxy.get("/api/tags", headers=bearer)).read()
    (record,) = await wait_audit(audit_path, 1)
    assert record["replica"] == "pod-7"


@pytest.mark.parametrize(
    "when",
    [
        datetime(2026, 8, 21, 10, 16, 40, 139257, tzinfo=UTC),
        datetime(2026, 8, 21, 10, 16, 40, tzinfo=UTC),  # no microseconds
        datetime(2026, 8, 21, 10, 16, 40, 5, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2026, 8, 21, 12, 16, 40, 7, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_timestamp_is_format_timestamp(when: datetime) -> None:
    """The record's ts is written exactly as times.format_timestamp writes it."""
    assert timestamp(when) == format_timestamp(when)


def test_milliseconds_are_rounded_as_round_does() -> None:
    """The record's milliseconds equal round(seconds * 1000, 3), over many scales."""
    rng = random.Random(14)  # noqa: S311 - test values, not secrets
    values = [0.0, 1e-7, 0.0005, 0.0015, 2.5e-4, -0.0012345, 3600.0001]
    values += [rng.random() * 10.0**e for e in range(-6, 4) for _ in range(2000)]
    for seconds in values:
        assert _ms(seconds) == round(seconds * 1000, 3), seconds


def _exchange() -> Exchange:
    return Exchange(
        request_id="r",
        method="POST",
        path="/api/chat",
        client="127.0.0.1",
        started=0.0,
        started_at=datetime.now(UTC),
        route_class=RouteClass.INFERENCE,
    )


_BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": "x" * 40}],
    "options": {"num_predict": 12},
}


@pytest.mark.parametrize("lazily", [True, False])
def test_estimates_read_from_the_body_either_way(lazily: bool) -> None:
    """Lazy or not, the estimates are the body's: 40 chars / 4, the cap asked for."""
    ex = _exchange()
    ex.estimate_from(_BODY, lazily=lazily)
    assert (ex.prompt_estimate, ex.max_output) == (
        estimate_prompt_tokens(_BODY),
        requested_output_tokens(_BODY),
    )
    assert (ex.prompt_estimate, ex.max_output) == (10, 12)


def test_a_lazy_body_is_walked_once_and_let_go() -> None:
    """The parsed body is held only until the first read, and not read after."""
    ex = _exchange()
    body = {"model": "m", "prompt": "y" * 8}
    ex.estimate_from(body, lazily=True)
    body["prompt"] = "y" * 400  # what is read is the body when first asked
    assert ex.max_output is None
    body["prompt"] = "changed after the first read"
    assert ex.prompt_estimate == 100
    assert ex._estimate_from is None


def test_setting_an_estimate_keeps_the_other_from_the_body() -> None:
    """Setting one estimate first reads both, then overrides only that one."""
    ex = _exchange()
    ex.estimate_from(_BODY, lazily=True)
    ex.prompt_estimate = 99
    assert (ex.prompt_estimate, ex.max_output) == (99, 12)
    ex.max_output = None
    assert (ex.prompt_estimate, ex.max_output) == (99, None)
    fresh = _exchange()
    assert (fresh.prompt_estimate, fresh.max_output) == (0, None)
