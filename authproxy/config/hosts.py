"""Host allow-list entries (``admin.allowed_hosts``): names, ``*.suffix``, IPs, CIDRs.

Entries are normalised once at load so the per-request check compares plain
strings: lower case, IPv6 without brackets, no trailing dot.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

_HOST_NAME_RE: Final = re.compile(
    r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*"
)


def host_pattern(item: str) -> str:
    """Return one allowed-host entry normalised (lower case, no brackets, no dot)."""
    entry = item.strip().lower().removeprefix("[").removesuffix("]")
    for parse in (ipaddress.ip_address, ipaddress.ip_network):
        try:
            return str(parse(entry))
        except ValueError:
            pass
    entry = entry.rstrip(".")
    if len(entry) > 253 or not _HOST_NAME_RE.fullmatch(entry):
        raise ValueError(
            f"{item!r} is not a host name, *.suffix, IP address or CIDR range "
            "(give no port)"
        )
    return entry


def host_patterns(value: Any) -> tuple[str, ...]:
    """Validate host names, ``*.suffix`` patterns, IP addresses or CIDR ranges.

    A string may hold several, separated by commas or spaces (handy in
    ``AUTHPROXY_ADMIN_ALLOWED_HOSTS``).
    """
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError(
            "expected a list of host names, *.suffix patterns, IP addresses "
            "or CIDR ranges"
        )
    return tuple(host_pattern(item) for item in items)
