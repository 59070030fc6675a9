"""config.load: defaults, the YAML file, AUTHPROXY_* variables, overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from authproxy.cli.main import build_parser, overrides_from
from authproxy.config.load import (
    PATH_KEYS,
    as_dict,
    config_keys,
    env_overrides,
    load_config,
)
from authproxy.config.model import AdminConfig, Config
from authproxy.errors import ConfigError


class TestDefaults:
    def test_embedded_defaults(self) -> None:
        """With no file, flags or env, the proxy runs on safe defaults."""
        config = load_config()
        assert config.listen.host == "127.0.0.1"
        assert config.listen.port == 11435
        assert config.upstream.url == "http://127.0.0.1:11434"
        assert config.upstream.response_timeout == 600.0
        assert config.keys.file == "keys/keys.yaml"
        assert config.keys.cache_ttl == 300.0
        assert config.server.max_body_size == 100 * 1024 * 1024
        assert config.server.trusted_proxies == ()


class TestSources:
    def test_yaml_values_and_units(self, tmp_path: Path) -> None:
        """Durations and sizes accept units; nested sections are read."""
        path = tmp_path / "c.yaml"
        path.write_text(
            "upstream:\n  url: http://ollama:11434/\n  response_timeout: 10m\n"
            "server:\n  max_body_size: 20MiB\n  trusted_proxies: [10.0.0.0/8, '::1']\n"
            "keys:\n  argon2: {time_cost: 2}\n"
        )
        config = load_config(path)
        assert config.upstream.url == "http://ollama:11434"
        assert config.upstream.response_timeout == 600.0
        assert config.server.max_body_size == 20 * 1024 * 1024
        assert config.server.trusted_proxies == ("10.0.0.0/8", "::1/128")
        assert config.keys.argon2.time_cost == 2
        assert config.keys.argon2.memory_cost == 65536

    def test_env_overrides_file_and_flags_override_env(self, tmp_path: Path) -> None:
        """Precedence: flags > AUTHPROXY_* environment > file > defaults."""
        path = tmp_path / "c.yaml"
        path.write_text("listen:\n  port: 1000\n  host: 0.0.0.0\n")
        env = {"AUTHPROXY_LISTEN_PORT": "2000", "AUTHPROXY_KEYS_CACHE_TTL": "5s"}
        config = load_config(path, {}, env)
        assert (config.listen.host, config.listen.port) == ("0.0.0.0", 2000)
        assert config.keys.cache_ttl == 5.0
        config = load_config(path, {"listen.port": 3000}, env)
        assert config.listen.port == 3000

    def test_text_env_values_are_taken_as_given(self) -> None:
        """An empty variable empties a text option; text is never YAML-mangled."""
        env = {
            "AUTHPROXY_ADMIN_LISTEN": "",
            "AUTHPROXY_UPSTREAM_HOST_HEADER": "no",
            "AUTHPROXY_KEYS_FILE": "0123",
        }
        config = load_config(None, {}, env)
        assert config.admin.listen == ""
        assert config.upstream.host_header == "no"
        assert config.keys.file == "0123"

    def test_every_key_has_an_env_name(self) -> None:
        """Each dotted key maps to AUTHPROXY_<SECTION>_<KEY>."""
        keys = config_keys()
        assert "keys.argon2.memory_cost" in keys
        env = {"AUTHPROXY_KEYS_ARGON2_MEMORY_COST": "1024"}
        assert env_overrides(env) == {"keys.argon2.memory_cost": 1024}

    def test_as_dict_is_plain_data(self) -> None:
        """The effective config renders as plain data for check-config."""
        data = as_dict(Config())
        assert data["listen"] == {"host": "127.0.0.1", "port": 11435}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"listen.port": "x"}, "listen.port: expected an integer, got 'x'"),
        ({"listen.port": True}, "listen.port: expected an integer, got True"),
        ({"listen.port": -1}, "listen.port: expected int in 0..65535, got -1"),
        ({"upstream.url": "localhost:11434"}, "upstream.url: expected an http(s) URL"),
        (
            {"upstream.url": "http://u:p@h"},
            "upstream.url: expected a URL without credentials",
        ),
        (
            {"upstream.url": "http://h/olla/../api"},
            "upstream.url: expected a path of plain segments such as /olla/ollama "
            "(no '.', '..' or empty segments), got 'http://h/olla/../api'",
        ),
        (
            {"upstream.url": "http://h/olla//ollama"},
            "upstream.url: expected a path of plain segments",
        ),
        (
            {"upstream.url": "http://h/olla%2Fx"},
            "upstream.url: expected a path without encoded '/' or '\\'",
        ),
        (
            {"upstream.url": "http://h/%2e%2e"},
            "upstream.url: expected a path of plain segments",
        ),
        (
            {"upstream.url": "http://h/a?b"},
            "upstream.url: expected a URL without credentials, query or fragment",
        ),
        ({"server.root_path": "ollama"}, "server.root_path: expected a path such as"),
        (
            {"server.root_path": "/a/./b"},
            "server.root_path: expected a path of plain segments",
        ),
        (
            {"upstream.connect_timeout": "soon"},
            "upstream.connect_timeout: invalid duration 'soon'",
        ),
        (
            {"upstream.connect_timeout": -1},
            "upstream.connect_timeout: expected a non-negative duration",
        ),
        (
            {"keys.cache_ttl": float("inf")},
            "keys.cache_ttl: duration is too long (at most 36500d, 100 years)",
        ),
        (
            {"keys.cache_ttl": float("nan")},
            "keys.cache_ttl: expected a number of seconds, got NaN",
        ),
        (
            {"server.max_body_size": "big"},
            "server.max_body_size: expected a byte count",
        ),
        (
            {"server.trusted_proxies": ["nope"]},
            "server.trusted_proxies: expected a list of IP",
        ),
        (
            {"keys.argon2.memory_cost": 4},
            "keys.argon2.memory_cost: expected int >= 8 (KiB), got 4",
        ),
        ({"keys.verify_workers": 0}, "keys.verify_workers: expected int > 0, got 0"),
        ({"keys.reload_interval": 0}, "keys.reload_interval: expected > 0, got 0"),
        ({"log.format": "xml"}, "log.format: expected auto|json|console, got 'xml'"),
        ({"log.level": None}, "log.level: expected debug|info|warning|error, got null"),
        ({"listen": 5}, "listen: expected a mapping, got 5"),
        ({"upstream.nope": 1}, "upstream.nope: unknown key"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_invalid_values_name_the_key(overrides, message) -> None:
    """Every invalid value raises ConfigError naming the dotted key."""
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("key", "value", "kept"),
    [
        ("upstream.url", "http://ollama:11434/", "http://ollama:11434"),
        (
            "upstream.url",
            "http://olla:40114/olla/ollama/",
            "http://olla:40114/olla/ollama",
        ),
        ("upstream.url", "https://gw/a~b/%41pi", "https://gw/a~b/%41pi"),
        ("server.root_path", "/ollama/", "/ollama"),
        ("server.root_path", "/", ""),
    ],
)
def test_base_paths_are_kept_without_a_final_slash(key, value, kept) -> None:
    """An upstream base path and a root path are accepted and normalised."""
    config = load_config(None, {key: value})
    section, name = key.split(".")
    assert getattr(getattr(config, section), name) == kept


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing config file is a clear error."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_bad_env_value() -> None:
    """An environment value that is not YAML names its key and variable."""
    with pytest.raises(ConfigError, match=r"listen\.port: environment variable"):
        load_config(None, {}, {"AUTHPROXY_LISTEN_PORT": "[1"})


def test_example_config_covers_every_key_with_its_default() -> None:
    """authproxy.example.yaml loads, names every key, and equals the defaults."""
    path = Path(__file__).resolve().parents[2] / "authproxy.example.yaml"
    data = yaml.safe_load(path.read_text())
    for key in config_keys():
        node: Any = data
        for part in key.split("."):
            assert isinstance(node, dict)
            assert part in node, f"{key} missing from the example"
            node = node[part]
    loaded, defaults = load_config(path), load_config()
    # Its relative paths are read from its own directory.
    keys = dataclasses.replace(defaults.keys, file=str(path.parent / "keys/keys.yaml"))
    audit = dataclasses.replace(
        defaults.audit, file=str(path.parent / "audit/usage.jsonl")
    )
    assert loaded == dataclasses.replace(defaults, keys=keys, audit=audit)


class TestConfig:
    def test_env_and_flags(self) -> None:
        """AUTHPROXY_TLS_* variables and --tls-cert/--tls-key set tls.cert/tls.key."""
        env = {
            "AUTHPROXY_TLS_CERT": "/data/tls/tls.crt",
            "AUTHPROXY_TLS_KEY": "/data/tls/tls.key",
            "AUTHPROXY_TLS_CLIENT_CA": "",
        }
        tls = load_config(None, {}, env).tls
        assert (tls.cert, tls.key, tls.client_ca) == (
            "/data/tls/tls.crt",
            "/data/tls/tls.key",
            None,
        )
        args = build_parser().parse_args(
            ["serve", "--tls-cert", "c.pem", "--tls-key", "k.pem"]
        )
        assert overrides_from(args) == {"tls.cert": "c.pem", "tls.key": "k.pem"}


def test_allowed_hosts_from_the_environment() -> None:
    """AUTHPROXY_ADMIN_ALLOWED_HOSTS takes a comma list or a YAML list."""
    for text in ("authproxy,admin.internal", "[authproxy, admin.internal]"):
        environ = {"AUTHPROXY_ADMIN_ALLOWED_HOSTS": text}
        config = load_config(None, environ=environ).admin
        assert config.allowed_hosts == ("authproxy", "admin.internal")
    assert AdminConfig().allowed_hosts == ()


class TestPaths:
    def test_relative_paths_in_a_file_start_at_its_directory(
        self, tmp_path: Path, monkeypatch
    ) -> None:
        """Every file setting written relative in the file is read from its folder."""
        site = tmp_path / "site"
        site.mkdir()
        path = site / "c.yaml"
        path.write_text(
            "keys: {file: k/keys.yaml}\n"
            "limits: {state_file: state.json}\n"
            "tls: {cert: tls/c.pem, key: tls/k.pem, client_ca: ../ca.pem}\n"
            "audit: {file: log/usage.jsonl, admin_file: /var/log/admin.jsonl}\n"
            "jwt: {key_file: jwt.yaml}\n"
        )
        monkeypatch.chdir(tmp_path)
        config = load_config("site/c.yaml")
        assert (config.keys.file, config.limits.state_file, config.jwt.key_file) == (
            str(site / "k/keys.yaml"),
            str(site / "state.json"),
            str(site / "jwt.yaml"),
        )
        assert (config.tls.cert, config.tls.key, config.tls.client_ca) == (
            str(site / "tls/c.pem"),
            str(site / "tls/k.pem"),
            str(site / "../ca.pem"),
        )
        assert (config.audit.file, config.audit.admin_file) == (
            str(site / "log/usage.jsonl"),
            "/var/log/admin.jsonl",
        )

    def test_flags_variables_and_defaults_stay_relative_to_the_cwd(
        self, tmp_path: Path
    ) -> None:
        """A path from a flag or variable, or a default, is left to the cwd."""
        path = tmp_path / "c.yaml"
        path.write_text("audit: {file: '-'}\ntls: {client_ca: ''}\n")
        env = {"AUTHPROXY_JWT_KEY_FILE": "jwt.yaml"}
        config = load_config(path, {"keys.file": "mine.yaml"}, env)
        assert (config.keys.file, config.jwt.key_file) == ("mine.yaml", "jwt.yaml")
        assert (config.audit.file, config.tls.client_ca) == ("-", None)
        assert load_config(path).keys.file == "keys/keys.yaml"

    def test_a_linked_config_directory_is_not_resolved(self, tmp_path: Path) -> None:
        """Paths start at the link's folder: a ConfigMap's target changes on update."""
        data = tmp_path / "..2026_12_01"
        data.mkdir()
        (data / "c.yaml").write_text("keys: {file: keys.yaml}\n")
        mounted = tmp_path / "config"
        mounted.mkdir()
        (mounted / "c.yaml").symlink_to(data / "c.yaml")
        assert load_config(mounted / "c.yaml").keys.file == str(mounted / "keys.yaml")

    def test_every_file_setting_is_anchored(self) -> None:
        """PATH_KEYS names every option that holds a file path, and nothing else."""
        files = {
            key
            for key in config_keys()
            if key.endswith(("file", ".cert", ".key", "_ca"))
        }
        assert set(PATH_KEYS) == files
