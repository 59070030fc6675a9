"""The last requests this process finished, for the console's live page.

The edge hands over the one audit record it built for each request; keeping
it is one ``deque.append`` (the record is neither copied nor serialised on
the hot path). The display rows, which keep only fields that hold no secret
and no prompt, are built when a page reads them. A deque with ``maxlen``
drops the oldest record by itself, so memory stays bounded.

These are this process's requests only: with several replicas each keeps
its own.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

DEFAULT_SIZE: Final = 200
# What the live page may show of a record: nothing secret, no prompt.
FIELDS: Final = (
    "ts",
    "request_id",
    "key_id",
    "key_name",
    "model",
    "route",
    "path",
    "status",
    "outcome",
    "reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "duration_ms",
)


class RecentRequests:
    """A bounded window of the last finished requests' records, newest kept."""

    __slots__ = ("_records",)

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        """Keep at most ``size`` records.

        Raises:
            ValueError: ``size`` is not positive.
        """
        if size < 1:
            raise ValueError("size must be positive")
        self._records: deque[dict[str, Any]] = deque(maxlen=size)

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record`` (the audit record, not copied: it is not changed later)."""
        self._records.append(record)

    @property
    def size(self) -> int:
        """Return how many records the window holds at most."""
        return self._records.maxlen or 0

    def __len__(self) -> int:
        """Return how many records are held."""
        return len(self._records)

    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return display rows, newest first, with only the allowed ``FIELDS``.

        Returns:
            At most ``limit`` rows (all held when ``None``); each a new dict.
        """
        count = len(self._records) if limit is None else limit
        rows: list[dict[str, Any]] = []
        for record in reversed(self._records):
            if len(rows) >= count:
                break
            rows.append({name: record.get(name) for name in FIELDS})
        return rows
