"""errors: one hierarchy; refusals and upstream failures carry what the edge answers."""

from __future__ import annotations

import pytest

from authproxy.errors import (
    AuthenticationError,
    AuthProxyError,
    ConfigError,
    Denied,
    KeyNotFoundError,
    KeyStoreError,
    UpstreamError,
    VerifyBusyError,
)


@pytest.mark.parametrize(
    "error",
    [
        ConfigError,
        KeyStoreError,
        KeyNotFoundError,
        AuthenticationError,
        VerifyBusyError,
    ],
)
def test_every_error_is_an_authproxy_error(error: type[Exception]) -> None:
    """Callers can catch AuthProxyError for anything the package raises on purpose."""
    with pytest.raises(AuthProxyError):
        raise error("x")


def test_config_errors_are_value_errors() -> None:
    """A ConfigError is also a ValueError, as converters report bad values."""
    with pytest.raises(ValueError, match=r"listen\.port: bad"):
        raise ConfigError("listen.port: bad")


def test_an_unknown_key_is_a_key_store_error() -> None:
    """Code that handles store errors also handles a missing key."""
    with pytest.raises(KeyStoreError):
        raise KeyNotFoundError("no key with id or name 'x'")


def test_denied_carries_status_reason_message_and_headers() -> None:
    """The message is what the client sees; the reason is only for records."""
    err = Denied(429, "rate_limit", "slow down", (("Retry-After", "3"),))
    assert (err.status, err.reason, err.message, err.headers) == (
        429,
        "rate_limit",
        "slow down",
        (("Retry-After", "3"),),
    )
    assert str(err) == "slow down"
    assert Denied(403, "r", "m").headers == ()


def test_upstream_error_carries_its_status_and_outcome() -> None:
    """An upstream failure says which status to answer and which outcome to record."""
    err = UpstreamError(504, "upstream timed out", "upstream_timeout")
    assert (err.status, err.message, err.outcome, str(err)) == (
        504,
        "upstream timed out",
        "upstream_timeout",
        "upstream timed out",
    )
    assert UpstreamError(502, "upstream unavailable").outcome is None
    assert UpstreamError(502, "upstream unavailable").reason is None


def test_upstream_error_keeps_the_operators_reason_apart() -> None:
    """The reason is for the log; the message, which the client sees, stays generic."""
    err = UpstreamError(
        502, "upstream unavailable", "upstream_error", "connect refused"
    )
    assert (err.reason, str(err)) == ("connect refused", "upstream unavailable")
