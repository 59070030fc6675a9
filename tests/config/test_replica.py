"""config.replica: server.replica names the replica; unset, the host name."""

from __future__ import annotations

import socket

import pytest

from authproxy.config.load import load_config
from authproxy.config.replica import host_name, replica_name
from authproxy.errors import ConfigError


def test_unset_means_the_host_name() -> None:
    """Without server.replica the replica is this host's (a pod's) name."""
    config = load_config(None, {})
    assert config.server.replica is None
    assert replica_name(config.server.replica) == socket.gethostname()[:128]
    assert host_name() == socket.gethostname()[:128]


def test_set_from_the_environment() -> None:
    """AUTHPROXY_SERVER_REPLICA sets it, as every setting's variable does."""
    config = load_config(None, {}, {"AUTHPROXY_SERVER_REPLICA": "ollama-0"})
    assert replica_name(config.server.replica) == "ollama-0"


@pytest.mark.parametrize("bad", ["two words", "-lead", "x" * 129, "ü", "a\nb"])
def test_a_name_that_is_no_host_name_is_refused(bad: str) -> None:
    """A name with spaces, control or non-ASCII characters is a config error."""
    with pytest.raises(ConfigError, match=r"server\.replica"):
        load_config(None, {"server.replica": bad})
