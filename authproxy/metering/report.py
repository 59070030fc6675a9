"""Usage reports: aggregate audit records by key, model, day, replica and/or reason.

A record counts to the key id it names, never to a name: a denied request
carries only the id its credential claimed, while an admitted one carries the
id and the name, and both belong to the same key. A JWT minted for a key
records that key's id. An admin JWT carries no key: its records hold the id
``admin`` and the token's actor in ``key_name``, which is not a key name and is
never shown as one. Model names are counted as Ollama resolves them
(``policy.names``), so ``llama3.2``, ``llama3.2:latest`` and ``LLAMA3.2`` are one
model.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import orjson

from authproxy.policy.names import ModelNameError, parse_model
from authproxy.times import parse_timestamp

DIMENSIONS: Final = ("key", "model", "day", "replica", "reason")
# The key id an admin JWT's principal carries (``auth.jwt``); real key ids are
# twelve base32 characters, so it never collides with one.
ADMIN_PRINCIPAL_ID: Final = "admin"
# Outcomes that mean authproxy refused the request itself; every other outcome
# is a request it admitted and sent on (or tried to).
DENIED_OUTCOMES: Final = frozenset({"denied"})


@dataclass(slots=True)
class Totals:
    """Sums over a group of audit records.

    ``requests`` counts the records whose outcome is not ``denied``: requests
    authproxy admitted and forwarded to Ollama, or tried to, whatever Ollama
    answered (``completed``, ``stream_error``, ``client_disconnected``,
    ``upstream_error``, ``upstream_timeout``, ``shutdown``). ``denied`` counts
    the requests authproxy refused itself (outcome ``denied``), which never
    reached Ollama and used no tokens.
    """

    requests: int = 0
    denied: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated_tokens: int = 0
    # The last key name seen in the group's records (for a group by key).
    key_name: str | None = None

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
        name = record_key_name(record)
        if name is not None:
            self.key_name = name
        if record.get("outcome") in DENIED_OUTCOMES:
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
    """Yield records from audit files, skipping lines that are not JSON objects.

    orjson parses a line about four times as fast as ``json``; ``keys list``
    and ``usage`` read the whole log.
    """
    for path in paths:
        with path.open("rb") as stream:
            for line in stream:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    yield record


def record_key_id(record: dict[str, Any]) -> str | None:
    """Return the key id a record counts to, or ``None`` (no credential)."""
    key_id = record.get("key_id")
    return key_id if isinstance(key_id, str) and key_id else None


def record_key_name(record: dict[str, Any]) -> str | None:
    """Return the key name a record holds; an admin JWT's actor is not one."""
    name = record.get("key_name")
    if not isinstance(name, str) or not name or is_admin_token(record):
        return None
    return name


def is_admin_token(record: dict[str, Any]) -> bool:
    """Tell whether a record was made with an admin JWT (which has no key)."""
    return record.get("scheme") == "jwt" and record.get("key_id") == ADMIN_PRINCIPAL_ID


def model_name(value: Any) -> str:
    """Return a recorded model name as Ollama resolves it, ``-`` if none.

    ``llama3.2`` becomes ``llama3.2:latest``, case and the default host and
    namespace are folded; a name Ollama would refuse is kept as recorded.
    """
    if not isinstance(value, str) or not value:
        return "-"
    try:
        return parse_model(value).pull_name
    except ModelNameError:
        return value


def record_replica(value: Any) -> str:
    """Return the replica a record names, ``-`` for records from before names."""
    return value if isinstance(value, str) and value else "-"


def record_reason(record: dict[str, Any]) -> str:
    """Return why authproxy refused a record's request, ``-`` if it did not.

    Only a denied record counts to a reason: an admitted request that failed
    upstream has an outcome, not a refusal reason.
    """
    reason = record.get("reason")
    if record.get("outcome") not in DENIED_OUTCOMES:
        return "-"
    return reason if isinstance(reason, str) and reason else "-"


def group_key(record: dict[str, Any], by: Sequence[str]) -> tuple[str, ...]:
    """Return the record's values for the chosen dimensions (``""``: no key)."""
    values = []
    for dimension in by:
        if dimension == "key":
            values.append(record_key_id(record) or "")
        elif dimension == "model":
            values.append(model_name(record.get("model")))
        elif dimension == "replica":
            values.append(record_replica(record.get("replica")))
        elif dimension == "reason":
            values.append(record_reason(record))
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
    groups: dict[tuple[str, ...], Totals],
    by: Sequence[str],
    names: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Flatten groups into JSON-ready rows.

    A group by key gives ``key_id`` (``None`` for requests without a
    credential) and ``key``, the key's current name: from ``names`` (the key
    store) when it lists the id, else a name the records held (key names
    never change), else ``None``.
    """
    seen = _names_seen(groups, by)
    rows = []
    for group, totals in groups.items():
        row: dict[str, Any] = {}
        for dimension, value in zip(by, group, strict=True):
            if dimension == "key":
                key_id = value or None
                row["key_id"] = key_id
                current = names.get(key_id) if names and key_id else None
                row["key"] = current or seen.get(value)
            else:
                row[dimension] = value
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


def _names_seen(
    groups: dict[tuple[str, ...], Totals], by: Sequence[str]
) -> dict[str, str]:
    """Map each key id to a name its records held, across all groups."""
    if "key" not in by:
        return {}
    index = list(by).index("key")
    return {
        group[index]: totals.key_name
        for group, totals in groups.items()
        if totals.key_name is not None
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
