"""Per-key limits: requests per minute, concurrent requests, tokens per day and month.

A request is admitted (rate and concurrency) before its body is read. Once the
body has been read, a metered request reserves its estimated tokens; it is
refused while the key's used plus reserved tokens already reach a quota, so
parallel requests cannot all slip under it. When the request ends its
reservation is replaced by the real count. Only the one request that crosses
the line may exceed a quota. Counters are saved to a small state file (and
rebuilt from the audit log if that file is missing), so they survive a
restart; reservations and in-flight counts belong to running requests only
and are never saved.
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

from authproxy.files import write_file_atomically
from authproxy.keys.record import KeyLimits
from authproxy.times import Clock, parse_timestamp

log = structlog.stdlib.get_logger(__name__)

STATE_VERSION: Final = 1
# Fields that describe running requests: meaningless after a restart.
_TRANSIENT: Final = ("in_flight", "reserved")


@dataclass(slots=True)
class _State:
    day: str = ""
    day_tokens: int = 0
    month: str = ""
    month_tokens: int = 0
    bucket: float = -1.0  # requests left this minute; -1 = full
    bucket_at: float = 0.0  # epoch seconds of the last refill
    in_flight: int = 0
    reserved: int = 0  # tokens held by running requests, not yet charged


@dataclass(slots=True)
class Ticket:
    """One admitted request's hold on its key: a concurrency slot, reserved tokens."""

    key_id: str
    limits: KeyLimits
    reserved: int = 0
    open: bool = True


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


def seconds_to_next_day(now: datetime) -> int:
    """Return the whole seconds until the next UTC midnight (at least one)."""
    now = now.astimezone(UTC)
    tomorrow = (now + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return max(1, math.ceil((tomorrow - now).total_seconds()))


def seconds_to_next_month(now: datetime) -> int:
    """Return the whole seconds until the first of the next UTC month (at least one)."""
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

    def admit(
        self, key_id: str, limits: KeyLimits, *, metered: bool = False
    ) -> Ticket | Refusal:
        """Take a slot for one request, or say why not.

        A metered request is refused here already when a token quota is used
        up (no reservation could pass), so its body is never read.

        Returns:
            The request's ticket, to ``reserve`` on and ``settle`` when it
            ends; or the refusal.
        """
        now = self._clock()
        state = self._state(key_id, now)
        refusal = self._check(state, limits, now)
        if refusal is None and metered:
            refusal = self._token_refusal(state, limits, now, pending=0)
        if refusal is not None:
            return refusal
        if limits.requests_per_minute is not None:
            state.bucket -= 1
            self.dirty = True
        state.in_flight += 1
        return Ticket(key_id, limits)

    def reserve(self, ticket: Ticket, tokens: int) -> Refusal | None:
        """Hold ``tokens`` against the key's quotas, or refuse the request.

        The check counts the tokens used and those other running requests
        hold, not this request's own estimate: the request that crosses a
        quota may exceed it, and every request after it is refused.
        """
        if not ticket.open:
            return None
        now = self._clock()
        state = self._state(ticket.key_id, now)
        refusal = self._token_refusal(state, ticket.limits, now, state.reserved)
        if refusal is not None:
            return refusal
        tokens = max(0, tokens)
        state.reserved += tokens
        ticket.reserved += tokens
        return None

    def settle(self, ticket: Ticket, tokens: int) -> None:
        """End a request: free its slot, drop its reservation, charge ``tokens``.

        Settling a ticket twice does nothing the second time.
        """
        if not ticket.open:
            return
        ticket.open = False
        state = self._keys.get(ticket.key_id)
        if state is not None:
            state.in_flight = max(0, state.in_flight - 1)
            state.reserved = max(0, state.reserved - ticket.reserved)
        ticket.reserved = 0
        self.charge(ticket.key_id, tokens)

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
        return None

    @staticmethod
    def _token_refusal(
        state: _State, limits: KeyLimits, now: datetime, pending: int
    ) -> Refusal | None:
        day_limit, month_limit = limits.tokens_per_day, limits.tokens_per_month
        for period, used, limit, until in (
            ("day", state.day_tokens, day_limit, seconds_to_next_day),
            ("month", state.month_tokens, month_limit, seconds_to_next_month),
        ):
            if limit is not None and used + pending >= limit:
                reset = until(now)
                message = f"token quota of {limit} per {period} used up"
                return Refusal(f"token_quota_{period}", message, reset, limit, 0, reset)
        return None

    @staticmethod
    def _refill(state: _State, rpm: int, at: float) -> None:
        if state.bucket < 0 or state.bucket_at <= 0:
            state.bucket, state.bucket_at = float(rpm), at
            return
        state.bucket = min(float(rpm), state.bucket + (at - state.bucket_at) * rpm / 60)
        state.bucket_at = at

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

    def reserved(self, key_id: str) -> int:
        """Return the tokens the key's running requests hold."""
        state = self._keys.get(key_id)
        return state.reserved if state is not None else 0

    def save(self) -> None:
        """Write the counters to the state file (atomic replace).

        Raises:
            KeyStoreError: the file cannot be written (from the atomic write).
        """
        if self.state_path is None:
            return
        keys = {k: asdict(v) for k, v in self._keys.items()}
        for entry in keys.values():
            for name in _TRANSIENT:
                del entry[name]
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
                saved = {k: v for k, v in entry.items() if k not in _TRANSIENT}
                self._keys[str(key_id)] = _State(**saved)
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
