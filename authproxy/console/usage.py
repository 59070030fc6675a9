"""The usage page: tokens per day by key or model, top keys, models, denials.

Each chart and table is also a CSV file to download.

Every number comes from one ``admin.usage.usage_data`` call grouped by day,
key, model and reason: the source ``GET /admin/usage`` reads (this proxy's
audit log, or with ``state.backend: redis`` the fleet's counters), so the
page and the API agree. The window is whole UTC days, today included.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from aiohttp import web
from markupsafe import Markup, escape

from authproxy.admin.body import BadRequestError
from authproxy.admin.usage import usage_data
from authproxy.console.context import main_app, now
from authproxy.console.keychart import PALETTE, stacked_chart
from authproxy.console.render import render
from authproxy.metering.report import ADMIN_PRINCIPAL_ID
from authproxy.web.appkeys import FLEET_USAGE_KEY

WINDOWS: Final = (7, 30, 90)
BYS: Final = ("key", "model")
CHARTS: Final = ("tokens", "top-keys", "top-models", "denied")
# Series drawn apart in the stacked chart; the rest are summed as "other".
STACKED: Final = len(PALETTE) - 1
OTHER: Final = "other"
NO_KEY: Final = "(no key)"


@dataclass(slots=True)
class Sums:
    """A group's numbers over the window."""

    requests: int = 0
    denied: int = 0
    prompt: int = 0
    completion: int = 0

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt + self.completion

    def add(self, row: Mapping[str, Any]) -> None:
        """Add one report row."""
        self.requests += int(row["requests"])
        self.denied += int(row["denied"])
        self.prompt += int(row["prompt_tokens"])
        self.completion += int(row["completion_tokens"])


@dataclass(slots=True)
class Usage:
    """What the page and its CSV files show, for one window."""

    days: list[date]
    by: str
    keys: dict[str, Sums] = field(default_factory=dict)
    key_names: dict[str, str] = field(default_factory=dict)
    models: dict[str, Sums] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    # Tokens per (series name, day).
    daily: dict[str, dict[date, int]] = field(default_factory=dict)

    def top(self, groups: Mapping[str, Sums]) -> list[tuple[str, Sums]]:
        """Return the groups, most tokens first, then most requests, then name."""
        return sorted(
            groups.items(), key=lambda kv: (-kv[1].tokens, -kv[1].requests, kv[0])
        )

    def key_label(self, key_id: str) -> str:
        """Return how the page names a key id: its name, else the id."""
        if not key_id:
            return NO_KEY
        if key_id == ADMIN_PRINCIPAL_ID:
            return "admin JWT"
        return self.key_names.get(key_id) or key_id

    def stacks(self) -> list[tuple[str, list[int]]]:
        """Return the chart's series, biggest first; past ``STACKED`` summed."""
        ranked = sorted(
            self.daily.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])
        )
        stacks = [
            (name, [per_day.get(d, 0) for d in self.days])
            for name, per_day in ranked[:STACKED]
        ]
        rest = ranked[STACKED:]
        if rest:
            stacks.append(
                (OTHER, [sum(p.get(d, 0) for _, p in rest) for d in self.days])
            )
        return stacks


def parse_query(query: Mapping[str, str]) -> tuple[int, str]:
    """Read ``days`` (7, 30 or 90; default 7) and ``by`` (key or model; default key).

    Raises:
        BadRequestError: another value.
    """
    raw = query.get("days", "7")
    if raw not in {str(d) for d in WINDOWS}:
        raise BadRequestError("days: one of 7, 30, 90")
    by = query.get("by", "key")
    if by not in BYS:
        raise BadRequestError("by: key or model")
    return int(raw), by


def window_days(moment: datetime, count: int) -> list[date]:
    """Return the ``count`` UTC days ending today, oldest first."""
    today = moment.astimezone(UTC).date()
    return [today - timedelta(days=count - 1 - n) for n in range(count)]


def summarise(rows: Iterable[Mapping[str, Any]], days: list[date], by: str) -> Usage:
    """Sum report rows (grouped by day, key, model, reason) into the page's numbers."""
    usage = Usage(days=days, by=by)
    shown = set(days)
    for row in rows:
        day = date.fromisoformat(str(row["day"]))
        if day not in shown:
            continue  # the counters' whole days may reach past the window
        key_id = row.get("key_id") or ""
        if row.get("key"):
            usage.key_names[key_id] = str(row["key"])
        model = str(row["model"])
        usage.keys.setdefault(key_id, Sums()).add(row)
        usage.models.setdefault(model, Sums()).add(row)
        if row["denied"] and row["reason"] != "-":
            reason = str(row["reason"])
            usage.reasons[reason] = usage.reasons.get(reason, 0) + int(row["denied"])
        tokens = int(row["prompt_tokens"]) + int(row["completion_tokens"])
        if tokens:
            name = usage.key_label(key_id) if by == "key" else model
            per_day = usage.daily.setdefault(name, {})
            per_day[day] = per_day.get(day, 0) + tokens
    return usage


async def load_usage(request: web.Request) -> tuple[Usage, int, str]:
    """Read the query and the report; return the numbers, the days and ``by``.

    Raises:
        BadRequestError: a bad ``days`` or ``by``.
        Denied: 503 when the fleet's counters cannot be read.
    """
    count, by = parse_query(request.query)
    moment = now(request)
    days = window_days(moment, count)
    since = datetime(days[0].year, days[0].month, days[0].day, tzinfo=UTC)
    report = await usage_data(
        main_app(request), ["day", "key", "model", "reason"], since, None, moment
    )
    return summarise(report["rows"], days, by), count, by


async def usage_page(request: web.Request) -> web.Response:
    """GET /admin/ui/usage: the charts and tables of a 7, 30 or 90-day window."""
    usage, count, by = await load_usage(request)
    stacks = usage.stacks()
    chart = stacked_chart(
        usage.days, stacks, f"Tokens per UTC day, last {count} days, by {by}"
    )
    return await render(
        request,
        "usage.html",
        {
            "usage": usage,
            "count": count,
            "by": by,
            "windows": WINDOWS,
            "bys": BYS,
            "chart": chart,
            "legend": [(name, PALETTE[n]) for n, (name, _) in enumerate(stacks)],
            "stacks": stacks,
            "top_keys": usage.top(usage.keys),
            "top_models": usage.top(usage.models),
            "reasons": sorted(usage.reasons.items(), key=lambda kv: (-kv[1], kv[0])),
            "denied_chart": denied_chart(usage.reasons),
            "fleet": main_app(request).get(FLEET_USAGE_KEY) is not None,
        },
    )


def denied_chart(reasons: Mapping[str, int]) -> Markup:
    """Return denied requests per reason as horizontal SVG bars, most first."""
    ranked = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    peak = max(reasons.values(), default=0)
    row, text_w, width = 22, 200, 600
    bars = []
    for n, (reason, count) in enumerate(ranked):
        y = n * row + 4
        w = round((width - text_w - 60) * count / peak, 1) if peak else 0
        name = escape(reason)
        bars.append(
            f'<text class="tick" x="0" y="{y + 14}">{name}</text>'
            f'<rect class="denied" x="{text_w}" y="{y}" width="{w}" height="{row - 6}" '
            f'fill="{PALETTE[4]}"><title>{name}: {count} denied</title></rect>'
            f'<text class="tick" x="{text_w + w + 6}" y="{y + 14}">{count}</text>'
        )
    height = max(len(ranked), 1) * row + 8
    label = "Denied requests by reason"
    return Markup(  # noqa: S704 - every text in it is escaped or a number
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{label}"><title>{label}</title>{"".join(bars)}</svg>'
    )


def usage_csv(usage: Usage, chart: str) -> list[list[Any]]:
    """Return the rows of one chart's CSV file, header first.

    Raises:
        BadRequestError: an unknown ``chart``.
    """
    sums = ["requests", "denied", "prompt_tokens", "completion_tokens", "total_tokens"]
    if chart == "tokens":
        stacks = sorted(usage.daily.items())
        table: list[list[Any]] = [["day", *(name for name, _ in stacks), "total"]]
        for day in usage.days:
            values = [per_day.get(day, 0) for _, per_day in stacks]
            table.append([day.isoformat(), *values, sum(values)])
        return table
    if chart == "top-keys":
        return [["key_id", "key", *sums]] + [
            [key_id, usage.key_label(key_id), *_numbers(s)]
            for key_id, s in usage.top(usage.keys)
        ]
    if chart == "top-models":
        return [["model", *sums]] + [
            [model, *_numbers(s)] for model, s in usage.top(usage.models)
        ]
    if chart == "denied":
        return [["reason", "denied"]] + [
            [r, c] for r, c in sorted(usage.reasons.items(), key=lambda kv: -kv[1])
        ]
    raise BadRequestError("chart: one of " + ", ".join(CHARTS))


def _numbers(sums: Sums) -> list[int]:
    return [sums.requests, sums.denied, sums.prompt, sums.completion, sums.tokens]


def to_csv(rows: Sequence[Sequence[Any]]) -> str:
    """Return ``rows`` as CSV text (CRLF lines, as RFC 4180 says)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


async def usage_csv_file(request: web.Request) -> web.Response:
    """GET /admin/ui/usage.csv?chart=&days=&by=: one chart's numbers to download.

    Raises:
        BadRequestError: a bad ``chart``, ``days`` or ``by``.
    """
    chart = request.query.get("chart", "")
    if chart not in CHARTS:
        raise BadRequestError("chart: one of " + ", ".join(CHARTS))
    usage, count, by = await load_usage(request)
    name = f"usage-{chart}-{count}d" + (f"-by-{by}" if chart == "tokens" else "")
    return web.Response(
        text=to_csv(usage_csv(usage, chart)),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


def setup_usage_pages(app: web.Application) -> None:
    """Add the usage page and its CSV files."""
    app.router.add_get("/usage", usage_page, name="console_usage")
    app.router.add_get("/usage.csv", usage_csv_file, name="console_usage_csv")
