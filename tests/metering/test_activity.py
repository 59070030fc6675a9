"""metering.activity: each key's last use and recent totals, in one pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from authproxy.metering.activity import Activity, key_activity

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def _record(ts: str, key_id: object = "k1", **fields: Any) -> dict[str, Any]:
    return {
        "ts": ts,
        "key_id": key_id,
        "key_name": "alice",
        "scheme": "bearer",
        "outcome": "completed",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        **fields,
    }


class TestKeyActivity:
    def test_today_and_30_days(self) -> None:
        """Today is the UTC day of now; 30 days are the 720 hours before now."""
        records = [
            _record("2026-10-01T12:00:00Z"),  # older than 30 days
            _record("2026-10-31T15:00:00Z"),  # exactly 30 days ago: inside
            _record("2026-11-29T23:59:59Z"),  # yesterday
            _record("2026-11-30T00:00:00Z", prompt_tokens=1, completion_tokens=1),
        ]
        activity = key_activity(records, NOW)
        assert activity["k1"].as_dict() == {
            "last_used_at": "2026-11-30T00:00:00Z",
            "requests_today": 1,
            "tokens_today": 2,
            "requests_30d": 3,
            "tokens_30d": 32,
        }

    def test_last_used_is_the_latest_whatever_the_order(self) -> None:
        """Files need not be in time order: the latest admitted request wins."""
        records = [_record("2026-11-30T10:00:00Z"), _record("2026-11-01T10:00:00Z")]
        assert key_activity(records, NOW)["k1"].last_used == datetime(
            2026, 11, 30, 10, tzinfo=UTC
        )

    @pytest.mark.parametrize(
        "record",
        [
            _record("2026-11-30T10:00:00Z", outcome="denied"),
            _record("2026-11-30T10:00:00Z", key_id=None),
            _record("2026-11-30T10:00:00Z", key_id=""),
            _record("2026-11-30T10:00:00Z", key_id="admin", scheme="jwt"),
            _record("yesterday"),
            _record("2026-11-30T10:00:00Z", key_id=7),
        ],
        ids=["denied", "no-key", "empty-key", "admin-jwt", "bad-ts", "odd-key-id"],
    )
    def test_records_that_are_no_use_of_a_key(self, record: dict[str, Any]) -> None:
        """Denials, keyless or admin-JWT requests and unreadable times count nothing."""
        assert key_activity([record], NOW) == {}

    def test_errors_from_ollama_still_count_as_use(self) -> None:
        """An admitted request counts whatever its outcome (a 502, a cut stream)."""
        records = [
            _record("2026-11-30T10:00:00Z", outcome="upstream_error"),
            _record("2026-11-30T11:00:00Z", outcome="stream_error"),
        ]
        assert key_activity(records, NOW)["k1"].today.requests == 2

    def test_today_is_the_utc_day(self) -> None:
        """A clock in another zone still counts the UTC day."""
        here = NOW.astimezone(timezone(timedelta(hours=10)))  # already Dec 1 there
        records = [_record("2026-11-30T01:00:00Z")]
        assert key_activity(records, here)["k1"].today.requests == 1

    def test_a_key_never_seen(self) -> None:
        """An unused key's activity is empty: never used, zero counts."""
        assert Activity().as_dict() == {
            "last_used_at": None,
            "requests_today": 0,
            "tokens_today": 0,
            "requests_30d": 0,
            "tokens_30d": 0,
        }
