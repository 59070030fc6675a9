"""config.model: the frozen settings and the checks of single options."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from authproxy.config.load import load_config
from authproxy.config.model import TLSConfig, admin_trail_file
from authproxy.errors import ConfigError


class TestDefaults:
    def test_config_is_frozen(self) -> None:
        """Config objects cannot be changed after loading."""
        config = load_config()
        with pytest.raises(AttributeError):
            config.listen.port = 1  # type: ignore[misc]


class TestConfig:
    def test_defaults_keep_tls_off(self) -> None:
        """Without settings TLS is off, TLS 1.2 is the floor and nothing redirects."""
        assert load_config().tls == TLSConfig(
            cert=None,
            key=None,
            client_ca=None,
            min_version="TLSv1.2",
            reload_interval=1.0,
            redirect_listen="",
        )

    @pytest.mark.parametrize(
        ("dotted", "message"),
        [
            ({"tls.cert": "c.pem"}, "tls.key: required when tls.cert is set"),
            ({"tls.key": "k.pem"}, "tls.cert: required when tls.key is set"),
            (
                {"tls.client_ca": "ca.pem"},
                "tls.cert: required when tls.client_ca is set",
            ),
            (
                {"tls.redirect_listen": "0.0.0.0:80"},
                "tls.cert: required when tls.redirect_listen is set",
            ),
            (
                {"tls.min_version": "TLSv1.1"},
                "tls.min_version: expected TLSv1.2|TLSv1.3, got 'TLSv1.1'",
            ),
            (
                {"tls.cert": 5, "tls.key": "k.pem"},
                "tls.cert: expected a file path, got 5",
            ),
            (
                {"tls.redirect_listen": "80"},
                "tls.redirect_listen: expected HOST:PORT such as 127.0.0.1:11436, "
                "got '80'",
            ),
            ({"tls.reload_interval": 0}, "tls.reload_interval: expected > 0, got 0"),
        ],
        ids=[
            "cert-without-key",
            "key-without-cert",
            "client-ca-without-cert",
            "redirect-without-cert",
            "tls-1.1",
            "cert-not-a-path",
            "redirect-not-host-port",
            "zero-interval",
        ],
    )
    def test_errors_name_the_key(self, dotted: dict[str, Any], message: str) -> None:
        """Each invalid TLS setting stops loading with a message naming its key."""
        with pytest.raises(ConfigError) as err:
            load_config(None, dotted)
        assert str(err.value) == message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["Admin.Internal", "*.Svc.Cluster.Local", "10.0.0.0/8"], None),
        ("authproxy, admin.internal", ("authproxy", "admin.internal")),
        (["[fd00::1]", "10.1.2.3"], ("fd00::1", "10.1.2.3")),
        (["*"], "'*' is not a host name"),
        (["authproxy:11436"], "'authproxy:11436' is not a host name"),
        (["http://authproxy"], "is not a host name"),
        ([5], "expected a list of host names"),
    ],
)
def test_allowed_hosts_setting(value, expected) -> None:
    """admin.allowed_hosts takes names, *.suffix, IPs and CIDRs; nothing else."""
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=f"admin.allowed_hosts: .*{expected}"):
            load_config(None, {"admin.allowed_hosts": value})
        return
    config = load_config(None, {"admin.allowed_hosts": value}).admin
    assert config.allowed_hosts == (
        expected or ("admin.internal", "*.svc.cluster.local", "10.0.0.0/8")
    )


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ({}, "audit/admin.jsonl"),
        ({"audit.file": "/var/log/ap/usage.jsonl"}, "/var/log/ap/admin.jsonl"),
        ({"audit.file": "-", "keys.file": "/etc/ap/keys.yaml"}, "/etc/ap/admin.jsonl"),
        ({"audit.file": "/a/u.jsonl", "audit.admin_file": "/b/t.jsonl"}, "/b/t.jsonl"),
        ({"audit.file": "/a/u.jsonl", "audit.admin_file": ""}, "/a/admin.jsonl"),
    ],
    ids=["default", "beside-audit", "stdout-audit", "explicit", "empty-is-unset"],
)
def test_admin_trail_goes_beside_the_audit_log(dotted, expected: str) -> None:
    """audit.admin_file defaults to admin.jsonl beside audit.file (or the store)."""
    assert admin_trail_file(load_config(None, dotted)) == Path(expected)


REDIS = {"state.backend": "redis", "state.redis_url": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, 1), (3, 3), ("auto", os.cpu_count() or 1)],
)
def test_server_workers_with_redis(value: Any, expected: int) -> None:
    """server.workers takes a count or auto (one per CPU) with the redis backend."""
    assert load_config(None, {**REDIS, "server.workers": value}).server.workers == (
        expected
    )


@pytest.mark.parametrize("value", [0, -1, "many", True, 1.5])
def test_server_workers_rejects_what_is_not_a_count(value: Any) -> None:
    """A worker count that is not a positive int or auto names the setting."""
    with pytest.raises(ConfigError, match=r"server\.workers: expected an int > 0"):
        load_config(None, {**REDIS, "server.workers": value})


def test_server_workers_need_the_redis_backend() -> None:
    """More than one worker with the file backend is refused, saying why."""
    with pytest.raises(ConfigError) as err:
        load_config(None, {"server.workers": 2})
    assert str(err.value) == (
        "server.workers > 1 needs state.backend: redis, because limits must stay exact"
    )
    assert load_config(None, {"server.workers": 1}).server.workers == 1
