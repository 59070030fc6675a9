"""config.hosts: admin.allowed_hosts entries, normalised once, bad ones refused."""

from __future__ import annotations

import pytest

from authproxy.config.hosts import host_pattern, host_patterns


@pytest.mark.parametrize(
    ("entry", "normalised"),
    [
        ("Admin.Example.COM.", "admin.example.com"),
        ("*.corp.example", "*.corp.example"),
        ("[::1]", "::1"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        (" 127.0.0.1 ", "127.0.0.1"),
    ],
)
def test_entries_are_normalised(entry: str, normalised: str) -> None:
    """Names are lower-cased without a trailing dot; IPs lose their brackets."""
    assert host_pattern(entry) == normalised


@pytest.mark.parametrize(
    "entry", ["admin.example:8443", "a..b", "*", "exa mple", "x" * 254, "-lead.example"]
)
def test_bad_entries_are_refused(entry: str) -> None:
    """A port, an empty label, a bare star or an over-long name is a config error."""
    with pytest.raises(ValueError, match="is not a host name"):
        host_pattern(entry)


def test_a_string_may_hold_several() -> None:
    """AUTHPROXY_ADMIN_ALLOWED_HOSTS may list entries separated by commas or spaces."""
    assert host_patterns("a.example, b.example 10.1.2.3") == (
        "a.example",
        "b.example",
        "10.1.2.3",
    )
    with pytest.raises(ValueError, match="expected a list"):
        host_patterns(42)
