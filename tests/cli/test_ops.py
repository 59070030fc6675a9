"""cli.ops: healthcheck (HTTP and HTTPS), check-config and keys check."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from authproxy.cli.main import main
from authproxy.cli.ops import probe_url
from authproxy.keys.store import load_store
from tests.support.harness import nested
from tests.support.rawhttp import closed_port


async def test_healthcheck_against_a_running_proxy(proxy, capsys, monkeypatch) -> None:
    """healthcheck exits 0 when /healthz answers, using listen.* from the config."""
    url = str(proxy.make_url("/healthz"))
    assert await asyncio.to_thread(main, ["healthcheck", "--url", url]) == 0
    assert capsys.readouterr().out.startswith("healthy: ")
    monkeypatch.setenv("AUTHPROXY_LISTEN_PORT", str(proxy.port))
    monkeypatch.setenv("AUTHPROXY_LISTEN_HOST", "0.0.0.0")
    assert await asyncio.to_thread(main, ["healthcheck"]) == 0
    assert f"http://127.0.0.1:{proxy.port}/healthz" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "probed"),
    [
        ("http://127.0.0.1:{port}", "http://127.0.0.1:{port}/healthz"),
        ("http://127.0.0.1:{port}/", "http://127.0.0.1:{port}/healthz"),
        ("http://127.0.0.1:{port}/readyz", "http://127.0.0.1:{port}/readyz"),
        ("http://127.0.0.1:{port}/healthz", "http://127.0.0.1:{port}/healthz"),
    ],
    ids=["base", "base-slash", "full-readyz", "full-healthz"],
)
async def test_healthcheck_url_may_be_a_base_url(
    proxy, capsys, given: str, probed: str
) -> None:
    """--url http://host:port probes /healthz there; a URL with a path as given."""
    url = given.format(port=proxy.port)
    assert await asyncio.to_thread(main, ["healthcheck", "--url", url]) == 0
    assert capsys.readouterr().out == f"healthy: {probed.format(port=proxy.port)}\n"


@pytest.mark.parametrize(
    ("given", "probed"),
    [
        ("http://proxy:11435", "http://proxy:11435/healthz"),
        ("https://[::1]:8443/", "https://[::1]:8443/healthz"),
        ("http://gateway/ollama/", "http://gateway/ollama/healthz"),
        ("http://gateway/ollama/readyz", "http://gateway/ollama/readyz"),
        ("http://proxy:11435?probe=1", "http://proxy:11435/healthz?probe=1"),
    ],
    ids=["no-path", "ipv6-slash", "prefix-slash", "prefix-full", "query"],
)
def test_probe_url_completes_base_urls(given: str, probed: str) -> None:
    """A URL without a path, or ending in '/', gets healthz; others stay as given."""
    assert probe_url(given) == probed


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
    err = capsys.readouterr().err
    assert err.startswith(f"unhealthy: {url}: ")
    assert "Errno" not in err  # the reason in words, not Python's exception text
    if where == "closed-port":
        assert err == f"unhealthy: {url}: Connection refused\n"


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


def test_check_config_takes_the_flags_of_serve(
    capsys, tmp_path: Path, monkeypatch
) -> None:
    """check-config --upstream/--listen/... reports what serve would run with."""
    path = tmp_path / "c.yaml"
    path.write_text("upstream:\n  url: http://from-file:11434\n")
    monkeypatch.setenv("AUTHPROXY_LOG_LEVEL", "debug")
    code = main(
        [
            *("check-config", "--config", str(path)),
            *("--upstream", "http://gpu-box:11434", "--listen", "0.0.0.0:8080"),
            *("--admin-listen", "", "--audit-log", "-", "--log-format", "json"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    data = yaml.safe_load(out)
    assert data["upstream"]["url"] == "http://gpu-box:11434"
    assert data["listen"] == {"host": "0.0.0.0", "port": 8080}
    assert data["admin"]["listen"] == ""
    assert data["audit"]["file"] == "-"
    assert data["log"] == {"format": "json", "access": True, "level": "debug"}
    assert out.splitlines()[:5] == [
        "# Effective configuration, secrets masked. From, later wins:",
        "#   built-in defaults",
        f"#   file {path.resolve()}",
        "#   environment variables: AUTHPROXY_LOG_LEVEL",
        "#   command-line flags: listen.host, listen.port, upstream.url, "
        "audit.file, admin.listen, log.format",
    ]


def test_check_config_rejects_bad_config(capsys, monkeypatch) -> None:
    """check-config exits 2 and names the key."""
    monkeypatch.setenv("AUTHPROXY_LISTEN_PORT", "http")
    assert main(["check-config"]) == 2
    assert "listen.port: expected an integer, got 'http'" in capsys.readouterr().err


def test_keys_check_validates_and_upgrades_the_store(
    capsys, config_file: Path, keys_path: Path, key
) -> None:
    """keys check passes a complete store, names an old one; --rewrite upgrades it."""
    args = ["keys", "check", "--config", str(config_file)]
    assert main(args) == 0
    assert capsys.readouterr().out == f"ok: {keys_path}: 1 key(s), complete\n"
    text = keys_path.read_text()
    old = text.replace("version: 2", "version: 1").replace("records: 1\n", "")
    keys_path.write_text(old)
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "file": str(keys_path),
        "keys": 1,
        "version": 1,
        "rewritten": False,
    }
    assert main([*args, "--rewrite"]) == 0
    assert capsys.readouterr().out == (
        f"ok: {keys_path}: 1 key(s); rewritten in the current format\n"
    )
    loaded = load_store(keys_path)
    assert (loaded.version, [r.id for r in loaded.table.records]) == (
        2,
        [key.record.id],
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text[: text.index("records:")], "incomplete: the final"),
        (lambda text: "", "the file is empty"),
        (
            lambda text: text.replace("records: 1", "records: 2"),
            "incomplete: 'records' does not match the number of keys (1)",
        ),
    ],
    ids=["cut", "empty", "miscounted"],
)
def test_keys_check_refuses_an_incomplete_store(
    capsys, config_file: Path, keys_path: Path, key, edit, message
) -> None:
    """keys check (even with --rewrite) exits 1 on a store the server would refuse."""
    keys_path.write_text(edit(keys_path.read_text()))
    before = keys_path.read_bytes()
    assert main(["keys", "check", "--rewrite", "--config", str(config_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"authproxy: {keys_path}: {message}")
    assert keys_path.read_bytes() == before


async def test_healthcheck_with_mtls_checks_the_handshake(
    start_https: Any,
    client_cas: tuple[trustme.CA, Path],
    tls_overrides: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With tls.client_ca, healthcheck has no client certificate: it checks TLS."""
    server = await start_https({"tls.client_ca": str(client_cas[1])})
    dotted = {
        **tls_overrides,
        "tls.client_ca": str(client_cas[1]),
        "listen.port": server.port,
    }
    path = tmp_path / "health.yaml"
    path.write_text(yaml.safe_dump(nested(dotted)))
    assert await asyncio.to_thread(main, ["healthcheck", "--config", str(path)]) == 0
    assert capsys.readouterr().out == (
        f"healthy: https://127.0.0.1:{server.port}/healthz "
        "(TLS handshake only: client certificates required)\n"
    )


async def test_healthcheck_https_against_plain_http_fails(
    proxy: Any, tls_overrides: dict[str, Any], tmp_path: Path, capsys: Any
) -> None:
    """healthcheck exits 1 when the configured TLS listener does not speak TLS."""
    path = tmp_path / "health.yaml"
    path.write_text(
        yaml.safe_dump(nested({**tls_overrides, "listen.port": proxy.port}))
    )
    args = ["healthcheck", "--config", str(path), "--timeout", "2"]
    assert await asyncio.to_thread(main, args) == 1
    assert capsys.readouterr().err.startswith(
        f"unhealthy: https://127.0.0.1:{proxy.port}/healthz: "
    )
