"""healthcheck and check-config."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from authproxy.cli import main
from tests.conftest import closed_port


async def test_healthcheck_against_a_running_proxy(proxy, capsys, monkeypatch) -> None:
    """healthcheck exits 0 when /healthz answers, using listen.* from the config."""
    url = str(proxy.make_url("/healthz"))
    assert await asyncio.to_thread(main, ["healthcheck", "--url", url]) == 0
    assert capsys.readouterr().out.startswith("healthy: ")
    monkeypatch.setenv("AUTHPROXY_LISTEN_PORT", str(proxy.port))
    monkeypatch.setenv("AUTHPROXY_LISTEN_HOST", "0.0.0.0")
    assert await asyncio.to_thread(main, ["healthcheck"]) == 0
    assert f"http://127.0.0.1:{proxy.port}/healthz" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["closed-port", "not-found"])
async def test_healthcheck_fails(proxy, capsys, where) -> None:
    """healthcheck exits 1 when nothing listens or /healthz is not 200."""
    url = (
        f"http://127.0.0.1:{closed_port()}/healthz"
        if where == "closed-port"
        else str(proxy.make_url("/nope"))
    )
    code = await asyncio.to_thread(
        main, ["healthcheck", "--url", url, "--timeout", "2"]
    )
    assert code == 1
    assert capsys.readouterr().err.startswith("unhealthy: ")


def test_check_config_prints_effective_settings(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    """check-config merges file and environment and prints valid YAML."""
    path = tmp_path / "c.yaml"
    path.write_text("listen:\n  port: 9000\nserver:\n  trusted_proxies: [10.0.0.0/8]\n")
    monkeypatch.setenv("AUTHPROXY_UPSTREAM_URL", "http://ollama:11434")
    assert main(["check-config", "--config", str(path)]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["listen"] == {"host": "127.0.0.1", "port": 9000}
    assert data["upstream"]["url"] == "http://ollama:11434"
    assert data["server"]["trusted_proxies"] == ["10.0.0.0/8"]


def test_check_config_rejects_bad_config(capsys, monkeypatch) -> None:
    """check-config exits 2 and names the key."""
    monkeypatch.setenv("AUTHPROXY_LISTEN_PORT", "http")
    assert main(["check-config"]) == 2
    assert "listen.port: expected an integer, got 'http'" in capsys.readouterr().err
