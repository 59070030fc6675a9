"""Clocks a test moves by hand, injected where the code takes a clock."""

from __future__ import annotations

from datetime import datetime, timedelta

from authproxy.times import utc_now


class WallClock:
    """A UTC clock (``authproxy.times.Clock``) that moves only when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        """Move on by a ``timedelta(**kwargs)``."""
        self.now += timedelta(**kwargs)


class MonotonicClock:
    """A monotonic clock in seconds (the brute-force limiter's) moved by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move on by ``seconds``."""
        self.now += seconds
