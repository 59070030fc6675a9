"""Usage reports: aggregate audit records by key, model and/or day."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from authproxy.times import parse_timestamp

DIMENSIONS: Final = ("key", "model", "day")


@dataclass(slots=True)
class Totals:
    """Sums over a group of audit records."""

    requests: int = 0
    denied: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def estimated_share(self) -> float:
        """The fraction of tokens that were estimated, not reported by Ollama."""
        total = self.total_tokens
        return round(self.estimated_tokens / total, 4) if total else 0.0

    def add(self, record: dict[str, Any]) -> None:
        """Count one record."""
        if record.get("outcome") == "denied":
            self.denied += 1
            return
        self.requests += 1
        prompt = _count(record.get("prompt_tokens"))
        completion = _count(record.get("completion_tokens"))
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        if record.get("usage_exact") is False:
            self.estimated_tokens += prompt + completion


def read_records(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Yield records from audit files, skipping lines that are not JSON objects."""
    for path in paths:
        with path.open("rb") as stream:
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record


def group_key(record: dict[str, Any], by: Sequence[str]) -> tuple[str, ...]:
    """Return the record's values for the chosen dimensions."""
    values = []
    for dimension in by:
        if dimension == "key":
            values.append(str(record.get("key_name") or record.get("key_id") or "-"))
        elif dimension == "model":
            values.append(str(record.get("model") or "-"))
        else:
            values.append(str(record.get("ts", ""))[:10])
    return tuple(values)


def aggregate(
    records: Iterable[dict[str, Any]],
    *,
    by: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[tuple[str, ...], Totals]:
    """Sum records per group, keeping those with ``since <= ts < until``."""
    groups: dict[tuple[str, ...], Totals] = {}
    for record in records:
        if since is not None or until is not None:
            try:
                ts = parse_timestamp(str(record.get("ts")))
            except ValueError:
                continue
            if (since is not None and ts < since) or (
                until is not None and ts >= until
            ):
                continue
        key = group_key(record, by)
        groups.setdefault(key, Totals()).add(record)
    return dict(sorted(groups.items()))


def as_rows(
    groups: dict[tuple[str, ...], Totals], by: Sequence[str]
) -> list[dict[str, Any]]:
    """Flatten groups into JSON-ready rows."""
    rows = []
    for key, totals in groups.items():
        row: dict[str, Any] = dict(zip(by, key, strict=True))
        row.update(
            requests=totals.requests,
            denied=totals.denied,
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            total_tokens=totals.total_tokens,
            estimated_share=totals.estimated_share,
        )
        rows.append(row)
    return rows


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
