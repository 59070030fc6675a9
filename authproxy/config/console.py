"""The ``admin.console`` section: the browser console on the admin listener."""

from __future__ import annotations

from dataclasses import dataclass

from authproxy.config.schema import option, seconds


def _positive(value: float) -> bool:
    return value > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    """The admin console under ``/admin/ui/`` (sessions, their lifetimes)."""

    enabled: bool = option(True)
    # A session unused this long ends (the cookie and the stored session).
    idle_timeout: float = option(900.0, parse=seconds, check=(_positive, "> 0"))
    # A session ends this long after sign-in, used or not.
    max_age: float = option(28800.0, parse=seconds, check=(_positive, "> 0"))
