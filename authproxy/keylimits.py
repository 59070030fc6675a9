"""Per-key limits: requests per minute, concurrent requests, tokens per day and month.

Quotas are checked before forwarding and charged when a request ends, so the
request that crosses the line completes and the next one is refused. Counters
are saved to a small state file (and rebuilt from the audit log if that file
is missing), so they survive a restart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import structlog

from authproxy.keyrecord import KeyLimits
from authproxy.keystore import write_file_atomically
from authproxy.times import Clock, parse_timestamp

log = structlog.stdlib.get_logger(__name__)

STATE_VERSION: Final = 1


@dataclass(slots=True)
class _State:
    day: str = ""
    day_tokens: int = 0
    month: str = ""
    month_tokens: int = 0
    bucket: float = -1.0  # requests left this minute; -1 = full
    bucket_at: float = 0.0  # epoch seconds of the last refill
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused, and the 429 headers that say when to retry."""

    reason: str
    message: str
    retry_after: int
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """Return ``Retry-After`` and the ``X-RateLimit-*`` headers."""
        return {
            "Retry-After": str(self.retry_after),
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


def _periods(now: datetime) -> tuple[str, str]:
    now = now.astimezone(UTC)
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")


def _seconds_to_next_day(now: datetime) -> int:
    now = now.astimezone(UTC)
    tomorrow = (now + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return max(1, math.ceil((tomorrow - now).total_seconds()))


def _seconds_to_next_month(now: datetime) -> int:
    now = now.astimezone(UTC)
    first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (first + timedelta(days=32)).replace(day=1)
    return max(1, math.ceil((following - now).total_seconds()))


class KeyLimiter:
    """Admits or refuses requests per key and charges their tokens."""

    def __init__(self, clock: Clock, state_path: Path | None) -> None:
        self.state_path = state_path
        self.dirty = False
        self._clock = clock
        self._keys: dict[str, _State] = {}

    def _state(self, key_id: str, now: datetime) -> _State:
        state = self._keys.setdefault(key_id, _State())
        day, month = _periods(now)
        if state.day != day:
            state.day, state.day_tokens = day, 0
        if state.month != month:
            state.month, state.month_tokens = month, 0
        return state

    def admit(self, key_id: str, limits: KeyLimits) -> Refusal | None:
        """Take a slot for one request, or say why not."""
        if not limits:
            return None
        now = self._clock()
        state = self._state(key_id, now)
        refusal = self._check(state, limits, now)
        if refusal is not None:
            return refusal
        if limits.requests_per_minute is not None:
            state.bucket -= 1
            self.dirty = True
        state.in_flight += 1
        return None

    def _check(self, state: _State, limits: KeyLimits, now: datetime) -> Refusal | None:
        if limits.concurrent is not None and state.in_flight >= limits.concurrent:
            return Refusal(
                "concurrency_limit",
                "too many concurrent requests for this key",
                1,
                limits.concurrent,
                0,
                1,
            )
        rpm = limits.requests_per_minute
        if rpm is not None:
            self._refill(state, rpm, now.timestamp())
            if state.bucket < 1:
                wait = math.ceil((1 - state.bucket) * 60 / rpm)
                return Refusal(
                    "rate_limit",
                    f"rate limit of {rpm} requests per minute exceeded",
                    wait,
                    rpm,
                    0,
                    math.ceil((rpm - state.bucket) * 60 / rpm),
                )
        for used, limit, period, reset in (
            (state.day_tokens, limits.tokens_per_day, "day", _seconds_to_next_day(now)),
            (
                state.month_tokens,
                limits.tokens_per_month,
                "month",
                _seconds_to_next_month(now),
            ),
        ):
            if limit is not None and used >= limit:
                return Refusal(
                    f"token_quota_{period}",
                    f"token quota of {limit} per {period} used up",
                    reset,
                    limit,
                    0,
                    reset,
                )
        return None

    @staticmethod
    def _refill(state: _State, rpm: int, at: float) -> None:
        if state.bucket < 0 or state.bucket_at <= 0:
            state.bucket, state.bucket_at = float(rpm), at
            return
        state.bucket = min(float(rpm), state.bucket + (at - state.bucket_at) * rpm / 60)
        state.bucket_at = at

    def release(self, key_id: str, tokens: int) -> None:
        """End a request: free its concurrency slot and charge its tokens."""
        state = self._keys.get(key_id)
        if state is None:
            return
        state.in_flight = max(0, state.in_flight - 1)
        self.charge(key_id, tokens)

    def charge(self, key_id: str, tokens: int) -> None:
        """Add tokens to a key's day and month counters."""
        if tokens <= 0:
            return
        state = self._state(key_id, self._clock())
        state.day_tokens += tokens
        state.month_tokens += tokens
        self.dirty = True

    def usage(self, key_id: str) -> tuple[int, int]:
        """Return the key's tokens used today and this month."""
        state = self._state(key_id, self._clock())
        return state.day_tokens, state.month_tokens

    def save(self) -> None:
        """Write the counters to the state file (atomic replace).

        Raises:
            KeyStoreError: the file cannot be written (from the atomic write).
        """
        if self.state_path is None:
            return
        keys = {k: asdict(v) for k, v in self._keys.items()}
        for entry in keys.values():
            del entry["in_flight"]
        data = json.dumps({"version": STATE_VERSION, "keys": keys}, sort_keys=True)
        write_file_atomically(self.state_path, data.encode())
        self.dirty = False

    def load(self) -> bool:
        """Read the counters back; return whether a state file was found."""
        if self.state_path is None or not self.state_path.exists():
            return False
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            for key_id, entry in data["keys"].items():
                self._keys[str(key_id)] = _State(**entry)
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.error(
                "limits_state_unreadable",
                path=str(self.state_path),
                error=type(err).__name__,
            )
            return False
        return True

    def rebuild(self, records: Iterable[dict[str, Any]]) -> int:
        """Recount this day's and month's tokens from audit records.

        Returns:
            How many records were counted.
        """
        day, month = _periods(self._clock())
        counted = 0
        for record in records:
            key_id, tokens = record.get("key_id"), record.get("total_tokens")
            if (
                not isinstance(key_id, str)
                or not isinstance(tokens, int)
                or tokens <= 0
            ):
                continue
            try:
                ts = parse_timestamp(str(record.get("ts")))
            except ValueError:
                continue
            record_day, record_month = _periods(ts)
            if record_month != month or record.get("outcome") == "denied":
                continue
            state = self._state(key_id, self._clock())
            state.month_tokens += tokens
            if record_day == day:
                state.day_tokens += tokens
            counted += 1
        self.dirty = counted > 0
        return counted
