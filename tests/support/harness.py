"""The proxy under test: the production server runner, config helpers, fixture types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from authproxy.config.model import Config
from authproxy.keys.lifecycle import CreatedKey
from authproxy.server.httpserver import GuardedAppRunner, server_kwargs
from authproxy.web.appkeys import UPSTREAM_KEY
from tests.support.admin import Stack

# argon2's CHEAPEST profile: tests exercise the real code path, fast.
CHEAP_ARGON2: Final = {
    "keys.argon2.time_cost": 1,
    "keys.argon2.memory_cost": 8,
    "keys.argon2.parallelism": 1,
}

# What a proxy must never relay (RFC 9110 §7.6.1), as the assertions spell them.
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"}
)

MakeKey = Callable[..., CreatedKey]
# (settings, admin token) -> a replica: a proxy and its admin API on one clock.
StartReplica = Callable[[dict[str, Any], str], Awaitable[Stack]]
StartProxy = Callable[..., Awaitable[TestClient[web.Request, None]]]


class ProxyTestServer(TestServer):
    """aiohttp's test server running the production runner (``GuardedAppRunner``).

    ``runner`` options (``lean_front``, ``fast_route``) override what the
    config says, for tests that compare one front or router with another.
    """

    def __init__(self, app: web.Application, config: Config, **runner: Any) -> None:
        super().__init__(app)
        self.config = config
        self._runner_options = runner

    async def _make_runner(self, **kwargs: Any) -> GuardedAppRunner:
        kwargs.update(server_kwargs(self.config))
        kwargs.setdefault("lean_front", self.config.server.front == "lean")
        kwargs.update(self._runner_options)
        return GuardedAppRunner(
            self.app, header_timeout=self.config.limits.header_timeout, **kwargs
        )


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


def upstream_port(client: TestClient[Any, Any]) -> int:
    """Return the port of the upstream a proxy under test forwards to."""
    port: int | None = client.app[UPSTREAM_KEY].origin.port
    assert port is not None
    return port


def base_url(client: TestClient[Any, Any]) -> str:
    """Return a test client's origin, as client packages take it (no slash)."""
    return str(client.make_url("")).rstrip("/")
