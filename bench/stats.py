"""Percentiles and summaries of latency samples."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], pct: float) -> float:
    """Return the ``pct`` percentile (nearest rank) of ``samples``, 0 if empty."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: Sequence[float], digits: int = 3) -> dict[str, float | int]:
    """Return count, p50, p90, p99 and max of ``samples``, rounded."""
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 50), digits),
        "p90": round(percentile(ordered, 90), digits),
        "p99": round(percentile(ordered, 99), digits),
        "max": round(ordered[-1], digits) if ordered else 0.0,
    }
