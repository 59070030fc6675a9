"""config.state: the state backend settings, from the file and the environment."""

from __future__ import annotations

import pytest

from authproxy.config.load import load_config
from authproxy.errors import ConfigError


def test_the_file_backend_is_the_default() -> None:
    """Without settings keys stay in the file; nothing points at Redis."""
    state = load_config().state
    assert (state.backend, state.redis_url, state.stale_after) == ("file", None, 2.0)


def test_environment_variables_choose_redis() -> None:
    """AUTHPROXY_STATE_BACKEND and AUTHPROXY_STATE_REDIS_URL set the backend."""
    state = load_config(
        None,
        None,
        {
            "AUTHPROXY_STATE_BACKEND": "redis",
            "AUTHPROXY_STATE_REDIS_URL": "rediss://redis.internal:6380/2",
            "AUTHPROXY_STATE_REDIS_PASSWORD_ENV": "REDIS_PASSWORD",
            "AUTHPROXY_STATE_STALE_AFTER": "500ms",
        },
    ).state
    assert state.backend == "redis"
    assert state.redis_url == "rediss://redis.internal:6380/2"
    assert state.redis_password_env == "REDIS_PASSWORD"
    assert state.stale_after == 0.5


@pytest.mark.parametrize(
    "url", ["redis://u:hunter2-secret@h:6379/0", "redis://:hunter2-secret@h/0"]
)
def test_a_password_in_the_url_is_refused_without_showing_it(url: str) -> None:
    """The error names the key and the fix, and never repeats the password."""
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"state.backend": "redis", "state.redis_url": url})
    message = str(caught.value)
    assert message.startswith("state.redis_url: the URL holds a password")
    assert "state.redis_password_env" in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("dotted", "message"),
    [
        ({"state.backend": "redis"}, "state.redis_url: required when"),
        ({"state.backend": "etcd"}, "state.backend: expected file | redis"),
        ({"state.redis_url": "http://h:6379"}, "state.redis_url: expected a URL"),
        ({"state.redis_url": "redis://h/x"}, "expected a database number"),
        ({"state.redis_url": "redis://h/0?db=1"}, "without query or fragment"),
        ({"state.redis_url": 5}, "state.redis_url: expected a redis://"),
        ({"state.redis_password_env": "NOT A NAME"}, "name of an environment"),
        ({"state.prefix": ""}, "state.prefix: expected 1-64"),
        ({"state.stale_after": 0}, "state.stale_after: expected > 0"),
        ({"state.lease_ttl": "500ms"}, "state.lease_ttl: expected >= 1s"),
    ],
)
def test_bad_values_name_the_key(dotted: dict[str, object], message: str) -> None:
    """Each bad state setting is refused with a message naming its key."""
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        load_config(None, dotted)


def test_an_empty_password_variable_name_means_none() -> None:
    """An empty variable name (AUTHPROXY_STATE_REDIS_PASSWORD_ENV="") is unset."""
    state = load_config(None, None, {"AUTHPROXY_STATE_REDIS_PASSWORD_ENV": ""}).state
    assert state.redis_password_env is None
