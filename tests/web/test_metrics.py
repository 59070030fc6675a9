"""web.metrics: /metrics on the proxy port, only when configured, to admin keys."""

from __future__ import annotations

import pytest

from tests.support.fake_ollama.server import FakeOllama
from tests.support.harness import MakeKey


@pytest.mark.parametrize("public", [False, True])
async def test_metrics_on_the_proxy_port(
    start_proxy, key, make_key: MakeKey, fake: FakeOllama, public
) -> None:
    """Only with metrics.public is /metrics served on the proxy port, to admin keys."""
    plain = make_key("plain")
    client = await start_proxy({"metrics.public": public})
    admin_auth = {"Authorization": f"Bearer {key.token}"}
    resp = await client.get("/metrics", headers=admin_auth)
    if public:
        assert resp.status == 200
        assert "# TYPE authproxy_requests_total counter" in await resp.text()
        resp = await client.get(
            "/metrics", headers={"Authorization": f"Bearer {plain.token}"}
        )
        assert resp.status == 403
        resp = await client.get("/metrics")
        assert resp.status == 401
        assert [r.path_qs for r in fake.received] == []
    else:
        assert resp.status == 404  # forwarded to Ollama like any other path
        assert fake.last.path_qs == "/metrics"
