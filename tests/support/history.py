"""A few weeks of made-up but well-formed proxy traffic, for usage pages to show.

The records have the fields the usage report reads, one request per key and
model a day, with token counts that follow a fixed pattern: screenshots of the
usage pages look the same on every run (only the dates move with today).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

MODELS: Final = ("llama3.2:latest", "qwen3:8b")
# Denial reasons and the status each is answered with.
DENIALS: Final = (("rate_limited", 429), ("model_not_allowed", 403), ("bad_token", 401))


def usage_history(
    keys: Mapping[str, str], now: datetime, days: int = 14
) -> list[dict[str, Any]]:
    """Return audit records for the ``days`` days before ``now``'s day.

    Args:
        keys: key name -> key id, the keys the traffic belongs to.
        now: the time the pages will be looked at (UTC).
        days: how many whole days of history.

    Returns:
        The records, oldest first.
    """
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    records: list[dict[str, Any]] = []
    for day in range(days, 0, -1):
        base = midnight - timedelta(days=day)
        for k, (name, key_id) in enumerate(sorted(keys.items())):
            for m, model in enumerate(MODELS):
                # A wave per key: the stacked bars differ from day to day.
                tokens = 400 + 300 * ((day + 2 * k + m) % 5) + 150 * k
                records.append(
                    _record(base + timedelta(hours=9 + k, minutes=m), key_id, name)
                    | {
                        "model": model,
                        "prompt_tokens": tokens // 3,
                        "completion_tokens": tokens - tokens // 3,
                        "total_tokens": tokens,
                    }
                )
        for n in range(day % 3 + 1):
            reason, status = DENIALS[(day + n) % len(DENIALS)]
            records.append(
                _record(base + timedelta(hours=15, minutes=n), None, None)
                | {"outcome": "denied", "reason": reason, "status": status}
            )
    return records


def _record(ts: datetime, key_id: str | None, name: str | None) -> dict[str, Any]:
    return {
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "key_id": key_id,
        "key_name": name,
        "method": "POST",
        "path": "/api/chat",
        "route": "inference",
        "model": None,
        "status": 200,
        "outcome": "completed",
        "reason": None,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "usage_exact": True,
    }
