"""Cost of single parts of a request, for instruction counting (callgrind A/B).

Usage: ``python bench/instrparts.py PART N`` under ``valgrind --tool=callgrind`` with
``PYTHONHASHSEED=0``, for two values of N, run from the checkout to measure; the
difference of the counts over the difference of N is one call of that part. Unlike
``bench/instrcount.py`` these counts are steady to a few instructions, so one lever's
effect can be told apart (see bench/results/issue14-ownwork-ab.md).

Parts: audit, access, bind, verify, headers, stream (one NDJSON chunk through the
usage parser), estimate, credentials, metrics.
``access`` includes ``bind`` (the request's log context is bound first).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from multidict import CIMultiDict, CIMultiDictProxy

sys.path.insert(0, os.getcwd())

from authproxy.auth.credentials import parse_credentials
from authproxy.auth.principal import Principal
from authproxy.auth.verify import Verifier
from authproxy.config.load import load_config
from authproxy.config.model import AuditConfig, MetricsConfig
from authproxy.keys.lifecycle import KeySpec, create_key
from authproxy.keys.store import make_hasher, read_store
from authproxy.metering.audit import AuditWriter
from authproxy.metering.exchange import Exchange, build_record
from authproxy.metering.metrics import Metrics
from authproxy.metering.usage import UsageParser, estimate_prompt_tokens
from authproxy.policy.routes import classify
from authproxy.proxy.headers import filter_response_headers, forward_request_headers
from authproxy.server.logs import AccessLogger, configure
from authproxy.times import utc_now
from authproxy.web.edge import bind_request

HEADERS = CIMultiDictProxy(
    CIMultiDict(
        [
            ("Host", "127.0.0.1:8080"),
            ("User-Agent", "Python/3.11 aiohttp/3.14.5"),
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip, deflate"),
            ("Authorization", "Bearer ap_b222b423pqz7_" + "A" * 43),
            ("Content-Length", "89"),
            ("Content-Type", "application/octet-stream"),
        ]
    )
)
REPLY = CIMultiDictProxy(
    CIMultiDict(
        [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Date", "Wed, 02 Dec 2026 00:35:38 GMT"),
            ("Content-Length", "415"),
        ]
    )
)
FINAL = (
    b'{"model":"llama3.2","done":true,"prompt_eval_count":26,"eval_count":4,'
    b'"total_duration":1}'
)
CHAT = b'{"model":"llama3.2","messages":[{"role":"user","content":"hello"}]}'
LINE = (
    b'{"model":"llama3.2","created_at":"2026-08-21T10:16:40.139257008Z",'
    b'"response":"tok","done":false}\n'
)


class Req(dict[Any, Any]):
    """What the access logger and bind_request read of a request."""

    method = "POST"
    path = "/api/chat"
    remote = "127.0.0.1"
    headers = HEADERS


class Resp:
    """What the access logger reads of a response."""

    status = 200
    body_length = 415


def exchange() -> Exchange:
    """A finished small chat request's record."""
    ex = Exchange(
        request_id="a" * 32,
        method="POST",
        path="/api/chat",
        client="127.0.0.1",
        started=time.monotonic(),
        started_at=datetime.now(UTC),
        route_class=classify("/api/chat"),
    )
    ex.principal = Principal("b222b423pqz7", "b", "bearer", frozenset({"inference"}))
    parser = UsageParser("application/json")
    parser.feed(FINAL)
    ex.usage = parser.finish()
    ex.status, ex.ttfb, ex.model, ex.prompt_estimate = 200, 0.001, "llama3.2", 3
    return ex


def repeat(n: int, call: Callable[[], object]) -> Callable[[], None]:
    """Return a function that calls ``call`` ``n`` times."""

    def run() -> None:
        for _ in range(n):
            call()

    return run


def part(name: str, n: int) -> Callable[[], None]:  # noqa: PLR0911 - one per part
    """Return a function that runs ``name`` ``n`` times."""
    if name == "audit":
        writer = AuditWriter(AuditConfig(file=tempfile.mktemp()))
        writer.open()
        ex = exchange()
        return repeat(n, lambda: writer.append(build_record(ex, time.monotonic())))
    if name == "headers":

        def headers() -> None:
            for _ in range(n):
                forward_request_headers(
                    HEADERS,
                    upstream_host="ollama:11434",
                    peer="127.0.0.1",
                    scheme="http",
                    request_id="r",
                    trusted_peer=False,
                )
                filter_response_headers(REPLY)

        return headers
    if name == "stream":
        parser = UsageParser("application/x-ndjson")
        return repeat(n, lambda: parser.feed(LINE))
    if name == "estimate":
        body = orjson.loads(CHAT)
        return repeat(n, lambda: estimate_prompt_tokens(body))
    if name == "credentials":
        return repeat(n, lambda: parse_credentials(HEADERS))
    if name == "metrics":
        metrics, ex = Metrics(MetricsConfig()), exchange()

        def observe() -> None:
            for _ in range(n):
                metrics.observe(ex, 0.002)
            metrics.render()

        return observe
    if name in {"access", "bind"}:
        configure(fmt="json", level="info", stream=open(os.devnull, "w"))  # noqa: SIM115
        access = AccessLogger(logging.getLogger("authproxy.access"), "")

        async def log() -> None:
            for _ in range(n):
                request = Req()
                bind_request(request)  # type: ignore[arg-type]
                if name == "access":
                    access.log(request, Resp(), 0.002)  # type: ignore[arg-type]

        return lambda: asyncio.run(log())
    if name == "verify":
        work = Path(tempfile.mkdtemp())
        config = load_config(
            None,
            {
                "keys.argon2.time_cost": 1,
                "keys.argon2.memory_cost": 8,
                "keys.argon2.parallelism": 1,
            },
        )
        hasher = make_hasher(config.keys.argon2)
        token = create_key(
            work / "keys.yaml", hasher, KeySpec(name="b"), now=utc_now()
        ).token
        verifier = Verifier(hasher, workers=1, queue=8, cache_ttl=60, cache_size=100)
        verifier.set_table(read_store(work / "keys.yaml"))
        bearer = CIMultiDict([("Authorization", f"Bearer {token}")])
        credential = parse_credentials(CIMultiDictProxy(bearer))

        async def hits() -> None:
            await verifier.authenticate(credential)  # the miss: argon2, cached
            for _ in range(n):
                await verifier.authenticate(credential)

        return lambda: asyncio.run(hits())
    raise SystemExit(f"unknown part {name!r}")


if __name__ == "__main__":
    part(sys.argv[1], int(sys.argv[2]))()
