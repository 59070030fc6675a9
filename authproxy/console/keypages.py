"""The keys pages: the table of keys, the new-key form, the page of one key."""

from __future__ import annotations

from datetime import UTC
from typing import Any, Final

from aiohttp import web

from authproxy.console.context import main_app, now
from authproxy.console.keyactions import setup_key_actions
from authproxy.console.keychart import day_series, series_csv, tokens_chart
from authproxy.console.keyforms import LIMIT_FIELDS
from authproxy.console.keysecrets import new_key_form, setup_secret_actions
from authproxy.console.keytable import (
    DAYS,
    KINDS,
    SORTS,
    STATUSES,
    filter_rows,
    key_numbers,
    key_row,
    sort_rows,
    window,
)
from authproxy.console.render import render
from authproxy.keys.lifecycle import find_key
from authproxy.keys.record import ALL_SCOPES, DEFAULT_SCOPES
from authproxy.web.appkeys import VERIFIER_KEY

# The table's columns: (label, sort name or None, numeric).
COLUMNS: Final = (
    ("name", "name", False),
    ("id", "id", False),
    ("kind", "kind", False),
    ("scopes", None, False),
    ("models", None, False),
    ("limits", None, False),
    ("status", "status", False),
    ("created", "created", False),
    ("expires", "expires", False),
    ("last used", "last_used", False),
    ("requests today", "requests_today", True),
    ("tokens today", "tokens_today", True),
    ("requests 30d", "requests_30d", True),
    ("tokens 30d", "tokens_30d", True),
)


async def keys_page(request: web.Request) -> web.Response:
    """GET /admin/ui/keys: every key with its numbers, filtered and sorted."""
    moment = now(request)
    main = main_app(request)
    numbers, problem = await key_numbers(main, moment)
    rows = [
        key_row(r, numbers.get(r.id), moment) for r in main[VERIFIER_KEY].table.records
    ]
    shown = filter_rows(rows, request.query)
    shown, column, order = sort_rows(shown, request.query)
    query = {k: request.query.get(k, "") for k in ("q", "status", "kind")}
    return await render(
        request,
        "keys.html",
        {
            "rows": shown,
            "total": len(rows),
            "columns": COLUMNS,
            "sort": column,
            "order": order,
            "query": query,
            "statuses": STATUSES,
            "kinds": KINDS,
            "problem": problem,
            "sort_names": SORTS,
        },
    )


def form_values(row: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the values the key forms show: the key's, or a new key's defaults."""
    data = row or {}
    limits = data.get("limits") or {}
    return {
        "name": data.get("name", ""),
        "kind": data.get("kind", "token"),
        "public_key": "",
        "scopes": data.get("scopes", list(DEFAULT_SCOPES)),
        "models": ", ".join(data.get("models") or []),
        "expires": data.get("expires_at") or "",
        "note": data.get("note") or "",
        "limits": {f: limits.get(name) or "" for f, name in LIMIT_FIELDS.items()},
    }


async def new_key_page(request: web.Request) -> web.Response:
    """GET /admin/ui/keys/new: the form that creates a key."""
    return await new_key_form(request, form_values())


async def key_page(request: web.Request) -> web.Response:
    """GET /admin/ui/keys/{id}: one key, its usage chart and its actions."""
    moment = now(request)
    main = main_app(request)
    record_ = find_key(main[VERIFIER_KEY].table, request.match_info["id"])
    numbers, problem = await key_numbers(main, moment)
    entry = numbers.get(record_.id)
    row = key_row(record_, entry, moment)
    first, _ = window(moment)
    series = day_series(entry.days if entry else {}, first, DAYS)
    return await render(
        request,
        "key.html",
        {
            "key": row,
            "chart": tokens_chart(series, f"Tokens per day of {record_.name}"),
            "problem": problem,
            "all_scopes": ALL_SCOPES,
            "values": form_values(row),
            "today": moment.astimezone(UTC).date().isoformat(),
        },
    )


async def key_usage_csv(request: web.Request) -> web.Response:
    """GET /admin/ui/keys/{id}/usage.csv: the chart as CSV (day, requests, tokens)."""
    moment = now(request)
    main = main_app(request)
    record_ = find_key(main[VERIFIER_KEY].table, request.match_info["id"])
    numbers, _ = await key_numbers(main, moment)
    entry = numbers.get(record_.id)
    first, _ = window(moment)
    series = day_series(entry.days if entry else {}, first, DAYS)
    return web.Response(
        text=series_csv(series),
        content_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="usage-{record_.id}.csv"'
        },
    )


def setup_key_pages(app: web.Application) -> None:
    """Add the keys pages and their actions."""
    r = app.router
    r.add_get("/keys", keys_page, name="console_keys")
    r.add_get("/keys/new", new_key_page, name="console_new_key")
    r.add_get("/keys/{id}", key_page, name="console_key")
    r.add_get("/keys/{id}/usage.csv", key_usage_csv, name="console_key_usage_csv")
    setup_secret_actions(app)
    setup_key_actions(app)
