"""config.console: the admin.console section, its defaults and its checks."""

from __future__ import annotations

import pytest

from authproxy.config.load import load_config
from authproxy.errors import ConfigError


def test_the_defaults() -> None:
    """On, 15 minutes idle, 8 hours at most."""
    console = load_config(None).admin.console
    assert console.enabled is True
    assert console.idle_timeout == 900
    assert console.max_age == 8 * 3600


def test_durations_are_read_as_durations() -> None:
    """5m and 1h as everywhere else in the config."""
    console = load_config(
        None, {"admin.console.idle_timeout": "5m", "admin.console.max_age": "1h"}
    ).admin.console
    assert (console.idle_timeout, console.max_age) == (300, 3600)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("admin.console.idle_timeout", 0),
        ("admin.console.max_age", "soon"),
        ("admin.console.enabled", "yes"),
        ("admin.console.colour", "blue"),
    ],
)
def test_bad_values_name_the_key(key: str, value: object) -> None:
    """Each refusal names the dotted key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, {key: value})
