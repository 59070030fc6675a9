"""console.usage: tokens per day stacked by key or model, top tables, denials, CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, timedelta
from http import HTTPStatus

import pytest

from authproxy.console.usage import Usage, parse_query, summarise
from authproxy.keys.lifecycle import CreatedKey
from tests.console.conftest import RedisConsole
from tests.support.admin import Stack
from tests.support.auth import bearer_auth
from tests.support.console import ConsoleClient, Element
from tests.support.payloads import CHAT


def rows_of(table: Element) -> list[list[str]]:
    """The text of each body row's cells."""
    body = table.find("tbody")
    assert body is not None
    return [[td.text for td in tr.find_all("td")] for tr in body.find_all("tr")]


async def download(browser: ConsoleClient, href: str) -> list[list[str]]:
    """GET a CSV link as a browser would; return its rows."""
    resp = await browser.client.get(href)
    assert resp.status == HTTPStatus.OK
    assert resp.content_type == "text/csv"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    return list(csv.reader(io.StringIO(await resp.text())))


async def traffic(stack: Stack, key: CreatedKey) -> None:
    """Two chats as alice, one refused wrong secret claiming no key."""
    assert key.token is not None
    for _ in range(2):
        assert await stack.call(key.token, "POST", "/api/chat", CHAT) == 200
    assert await stack.call("not-a-token", "GET", "/api/tags") == 401


async def test_requests_through_the_proxy_show_in_every_chart(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """alice's chats are today's tokens, her row and the model's; the 401 a reason."""
    await traffic(console_stack, key)
    status, api = await console_stack.api("GET", "/admin/usage?by=key")
    assert status == HTTPStatus.OK
    alice = next(r for r in api["rows"] if r["key_id"] == key.record.id)
    page = await signed_in.get("/admin/ui/usage?days=7&by=key")
    assert page.status == HTTPStatus.OK
    figure = page.doc.by_id("usage-tokens-chart")
    svg = figure.find("svg")
    assert svg is not None
    assert "Tokens per UTC day" in svg.attrs["aria-label"]
    assert svg.find("title") is not None
    today = console_stack.clock().astimezone(UTC).date().isoformat()
    segments = svg.find_all("rect", class_="seg")
    assert {s.attrs["data-day"] for s in segments} == {today}
    assert "alice" in figure.text  # the legend
    numbers = rows_of(page.doc.by_id("usage-tokens-table"))
    assert len(numbers) == 7  # zero-filled days
    assert numbers[-1] == [today, str(alice["total_tokens"])]
    assert all(row[1] == "0" for row in numbers[:-1])
    top = rows_of(page.doc.by_id("top-keys"))
    assert top[0][:3] == ["alice", key.record.id, "2"]
    assert top[0][-1] == str(alice["total_tokens"])
    models = rows_of(page.doc.by_id("top-models"))
    assert models[0][0].startswith(str(CHAT["model"]).split(":")[0])
    assert models[0][-1] == str(alice["total_tokens"])
    denied = rows_of(page.doc.by_id("denied-reasons"))
    assert len(denied) == 1
    assert denied[0][1] == "1"
    assert page.doc.by_id("denied-chart").find("svg") is not None
    assert key.token is not None
    assert key.token not in page.text


async def test_stacked_by_model_the_series_are_models(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """by=model names models in the legend and the chart's table."""
    await traffic(console_stack, key)
    page = await signed_in.get("/admin/ui/usage?days=30&by=model")
    table = page.doc.by_id("usage-tokens-table")
    header = [th.text for th in table.find_all("th")]
    assert header[0] == "day"
    assert header[1].startswith(str(CHAT["model"]).split(":")[0])
    assert len(rows_of(table)) == 30


async def test_each_chart_downloads_as_csv(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """Every a.csv-link answers text/csv with the numbers the page shows."""
    await traffic(console_stack, key)
    page = await signed_in.get("/admin/ui/usage?days=7&by=key")
    links = {
        a.attrs["href"].split("chart=")[1].split("&")[0]: a.attrs["href"]
        for a in page.doc.find_all("a", class_="csv-link")
    }
    assert sorted(links) == ["denied", "tokens", "top-keys", "top-models"]
    assert all("days=7" in h and "by=key" in h for h in links.values())
    tokens = await download(signed_in, links["tokens"])
    assert tokens[0] == ["day", "alice", "total"]
    assert len(tokens) == 8
    top = rows_of(page.doc.by_id("top-keys"))
    keys = await download(signed_in, links["top-keys"])
    assert keys[0][:2] == ["key_id", "key"]
    assert keys[1][:3] == [key.record.id, "alice", "2"]
    assert tokens[-1][1] == keys[1][-1] == top[0][-1]
    models = await download(signed_in, links["top-models"])
    assert models[0][0] == "model"
    assert models[1][-1] == keys[1][-1]
    denied = await download(signed_in, links["denied"])
    assert denied[0] == ["reason", "denied"]
    assert [row[1] for row in denied[1:]] == ["1"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("/admin/ui/usage?days=8", "days"),
        ("/admin/ui/usage?days=abc", "days"),
        ("/admin/ui/usage?by=day", "by"),
        ("/admin/ui/usage.csv?chart=tokens&days=365", "days"),
        ("/admin/ui/usage.csv?chart=tokens&by=reason", "by"),
        ("/admin/ui/usage.csv?chart=pie", "chart"),
        ("/admin/ui/usage.csv", "chart"),
    ],
)
async def test_bad_parameters_are_a_400_page(
    signed_in: ConsoleClient, query: str, field: str
) -> None:
    """A bad days, by or chart is refused as an HTML page naming the field."""
    page = await signed_in.get(query)
    assert page.status == HTTPStatus.BAD_REQUEST
    message = page.doc.by_id("error").find("p", class_="error")
    assert message is not None
    assert message.text.startswith(f"{field}:")


async def test_signed_out_usage_leads_to_login(browser: ConsoleClient) -> None:
    """Without a session neither the page nor a CSV file is served."""
    for path in ("/admin/ui/usage", "/admin/ui/usage.csv?chart=tokens"):
        resp = await browser.client.get(path, allow_redirects=False)
        assert resp.status == HTTPStatus.SEE_OTHER
        assert resp.headers["Location"].startswith("/admin/ui/login")


def test_defaults_and_choices() -> None:
    """No query is 7 days by key; 90 by model is allowed."""
    assert parse_query({}) == (7, "key")
    assert parse_query({"days": "90", "by": "model"}) == (90, "model")


def test_rows_outside_the_window_and_many_series() -> None:
    """Whole-day counters past the window are dropped; past 8 series is "other"."""
    first = date(2026, 1, 1)
    days = [first + timedelta(days=n) for n in range(2)]

    def row(day: date, key_id: str, tokens: int) -> dict[str, object]:
        return {
            "day": day.isoformat(),
            "key_id": key_id,
            "key": key_id.upper(),
            "model": "m:latest",
            "reason": "-",
            "requests": 1,
            "denied": 0,
            "prompt_tokens": tokens,
            "completion_tokens": 0,
        }

    rows = [row(days[0], f"k{n}", 10 + n) for n in range(10)]
    rows.append(row(first - timedelta(days=1), "k0", 1000))
    usage: Usage = summarise(rows, days, "key")
    assert usage.keys["k0"].tokens == 10
    stacks = usage.stacks()
    assert len(stacks) == 9
    assert stacks[0] == ("K9", [19, 0])
    assert stacks[-1] == ("other", [10 + 11, 0])


async def test_with_redis_the_page_shows_the_fleets_counters(
    redis_console: RedisConsole,
) -> None:
    """state.backend redis: tokens, top keys and denial reasons are Redis's numbers."""
    proxy, admin = redis_console.proxy, redis_console.admin
    ops, bob = redis_console.ops, redis_console.bob
    assert ops.token is not None
    resp = await proxy.get("/api/tags", headers=bearer_auth("not-a-key"))
    await resp.read()
    assert resp.status == HTTPStatus.UNAUTHORIZED
    browser = ConsoleClient(admin)
    assert (await browser.sign_in(ops.token)).status == HTTPStatus.OK
    page = await browser.get("/admin/ui/usage")
    assert "whole fleet" in page.text
    resp = await admin.get("/admin/usage?by=key", headers=bearer_auth(ops.token))
    usage = await resp.json()
    assert usage["source"] == "redis"
    fleet = next(r for r in usage["rows"] if r["key_id"] == bob.record.id)
    top = {row[1]: row for row in rows_of(page.doc.by_id("top-keys"))}
    assert top[bob.record.id][2] == str(fleet["requests"])
    assert top[bob.record.id][-1] == str(fleet["total_tokens"])
    denied = rows_of(page.doc.by_id("denied-reasons"))
    assert sum(int(row[1]) for row in denied) >= 1


async def test_an_empty_window_still_has_every_part(signed_in: ConsoleClient) -> None:
    """No traffic: zero-filled days, empty tables, the CSP and no style attribute."""
    page = await signed_in.get("/admin/ui/usage?days=90")
    assert page.status == HTTPStatus.OK
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "style=" not in page.text
    numbers = rows_of(page.doc.by_id("usage-tokens-table"))
    assert len(numbers) == 90
    assert all(row == [row[0]] for row in numbers)  # no series at all
    for table in ("top-keys", "top-models", "denied-reasons"):
        assert page.doc.by_id(table).find("tr", class_="empty") is not None
    assert page.doc.by_id("denied-chart").find("svg") is not None
    assert page.doc.by_id("usage-tokens-chart").find("rect") is None
