"""console.keypages: the keys table, filter and sort, a key's page, chart and CSV."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from authproxy.keys.lifecycle import CreatedKey
from authproxy.times import utc_now
from tests.console.conftest import RedisConsole
from tests.support.admin import Stack
from tests.support.auth import bearer_auth
from tests.support.console import ConsoleClient, Element
from tests.support.payloads import CHAT

COLUMNS = [
    "name",
    "id",
    "kind",
    "scopes",
    "models",
    "limits",
    "status",
    "created",
    "expires",
    "last used",
    "requests today",
    "tokens today",
    "requests 30d",
    "tokens 30d",
]


def cells(table: Element) -> dict[str, dict[str, str]]:
    """Each row of the keys table by key id: column label -> cell text."""
    header = [th.text.rstrip(" ▲▼") for th in table.find_all("th")]
    return {
        tr.attrs["data-key-id"]: dict(
            zip(header, [td.text for td in tr.find_all("td")], strict=True)
        )
        for tr in table.find_all("tr")
        if "data-key-id" in tr.attrs
    }


async def names(browser: ConsoleClient, query: str) -> list[str]:
    """The key names the table shows, in order, for ``query``."""
    page = await browser.get(f"/admin/ui/keys{query}")
    assert page.status == HTTPStatus.OK
    return [row["name"] for row in cells(page.doc.by_id("keys-table")).values()]


async def test_the_table_has_every_column_and_a_row_per_key(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """The contract's columns, in order; one tr[data-key-id] per key."""
    status, listed = await console_stack.api("GET", "/admin/keys")
    assert status == HTTPStatus.OK
    page = await signed_in.get("/admin/ui/keys")
    table = page.doc.by_id("keys-table")
    assert [th.text.rstrip(" ▲▼") for th in table.find_all("th")] == COLUMNS
    rows = cells(table)
    assert sorted(rows) == sorted(k["id"] for k in listed["keys"])
    ops = next(k for k in listed["keys"] if k["name"] == "ops")
    assert rows[ops["id"]]["scopes"] == "admin"
    assert rows[ops["id"]]["status"] == "active"
    assert rows[ops["id"]]["last used"] == "never"
    link = table.find("a", href=f"/admin/ui/keys/{ops['id']}")
    assert link is not None
    assert page.doc.by_id("new-key").attrs["href"] == "/admin/ui/keys/new"


async def test_requests_and_tokens_count_today_and_over_30_days(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """Two chats through the proxy show up in alice's row and on her page."""
    assert key.token is not None
    for _ in range(2):
        assert await console_stack.call(key.token, "POST", "/api/chat", CHAT) == 200
    page = await signed_in.get("/admin/ui/keys")
    row = cells(page.doc.by_id("keys-table"))[key.record.id]
    assert row["requests today"] == "2"
    assert row["requests 30d"] == "2"
    assert int(row["tokens today"]) > 0
    assert row["tokens today"] == row["tokens 30d"]
    assert row["last used"] != "never"
    detail = await signed_in.get(f"/admin/ui/keys/{key.record.id}")
    chart = detail.doc.by_id("key-usage-chart")
    svg = chart.find("svg")
    assert svg is not None
    bars = svg.find_all("rect", class_="bar")
    assert len(bars) == 30
    assert float(bars[-1].attrs["height"]) > 0
    assert all(float(b.attrs["height"]) == 0 for b in bars[:-1])
    link = chart.find("a", class_="csv-link")
    assert link is not None
    csv = await signed_in.client.get(link.attrs["href"])
    assert csv.status == HTTPStatus.OK
    assert csv.content_type == "text/csv"
    assert "attachment" in csv.headers["Content-Disposition"]
    lines = (await csv.text()).splitlines()
    assert lines[0] == "day,requests,tokens"
    assert len(lines) == 31
    assert lines[-1].split(",")[1] == "2"
    assert lines[-1].split(",")[2] == row["tokens today"]


async def test_filter_by_text_status_and_kind(
    signed_in: ConsoleClient, console_stack: Stack, token: str
) -> None:
    """q over name, id and note; status; kind."""
    for body in (
        {"name": "bob", "note": "team blue"},
        {"name": "carol", "password": "a long password 1"},
    ):
        status, _ = await console_stack.api("POST", "/admin/keys", body)
        assert status == HTTPStatus.CREATED
    status, _ = await console_stack.api("POST", "/admin/keys/alice/revoke")
    assert status == HTTPStatus.OK
    assert await names(signed_in, "?q=BLUE") == ["bob"]
    assert await names(signed_in, "?q=ali") == ["alice"]
    assert await names(signed_in, "?status=revoked") == ["alice"]
    assert await names(signed_in, "?status=active") == ["bob", "carol", "ops"]
    assert await names(signed_in, "?kind=password") == ["carol"]
    assert await names(signed_in, "?q=nobody") == []
    page = await signed_in.get("/admin/ui/keys?q=o&status=active")
    form = page.doc.by_id("keys-filter")
    assert form.attrs["method"] == "get"
    assert form.value_of("q") == "o"
    for name in ("filter-q", "filter-status", "filter-kind"):
        assert page.doc.find("label", for_=name) is not None


async def test_sort_by_any_column_both_ways(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """Header links sort; the sorted header flips the order; used keys by numbers."""
    assert key.token is not None
    assert await console_stack.call(key.token, "POST", "/api/chat", CHAT) == 200
    assert await names(signed_in, "") == ["alice", "ops"]
    assert await names(signed_in, "?sort=name&order=desc") == ["ops", "alice"]
    assert await names(signed_in, "?sort=requests_today&order=desc") == ["alice", "ops"]
    assert await names(signed_in, "?sort=requests_today&order=asc") == ["ops", "alice"]
    # Never used sorts last either way.
    assert (await names(signed_in, "?sort=last_used&order=asc"))[-1] == "ops"
    assert (await names(signed_in, "?sort=last_used&order=desc"))[-1] == "ops"
    assert await names(signed_in, "?sort=bogus") == ["alice", "ops"]
    page = await signed_in.get("/admin/ui/keys?sort=name&order=asc")
    header = page.doc.find("a", **{"data-sort": "name"})
    assert header is not None
    assert "order=desc" in header.attrs["href"]


async def test_the_new_key_form_has_every_field_with_a_label(
    signed_in: ConsoleClient,
) -> None:
    """Name, kind, password, public key, scopes, models, expiry, limits, note."""
    page = await signed_in.get("/admin/ui/keys/new")
    form = page.doc.by_id("create-form")
    assert form.attrs["action"] == "/admin/ui/keys"
    named = {el.attrs.get("name") for el in form.iter() if "name" in el.attrs}
    assert named >= {
        "csrf_token",
        "name",
        "kind",
        "password",
        "public_key",
        "scopes",
        "models",
        "expires",
        "rpm",
        "concurrency",
        "tokens_per_day",
        "tokens_per_month",
        "note",
    }
    labelled = {
        el.attrs["for"] for el in page.doc.find_all("label") if "for" in el.attrs
    }
    for el in form.iter():
        if (
            el.tag in {"input", "select", "textarea"}
            and el.attrs.get("type") != "hidden"
        ):
            assert el.attrs.get("id") in labelled, el.attrs


async def test_a_key_page_has_its_fields_and_its_actions(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """#key-detail and the action forms of a token key."""
    status, alice = await console_stack.api("GET", "/admin/keys/alice")
    assert status == HTTPStatus.OK
    page = await signed_in.get("/admin/ui/keys/alice")  # by name works too
    detail = page.doc.by_id("key-detail")
    assert alice["id"] in detail.text
    for form_id in (
        "edit-form",
        "rotate-form",
        "token-form",
        "disable-form",
        "revoke-form",
    ):
        form = page.doc.by_id(form_id)
        assert form.attrs["method"] == "post"
        assert form.value_of("csrf_token") == signed_in.csrf
    assert page.doc.find(id="enable-form") is None
    assert page.doc.find(id="passwd-form") is None


async def test_markup_in_a_key_note_is_shown_as_text(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """Autoescape: a note with a script tag is text on the list and the key page."""
    body: dict[str, Any] = {"name": "eve", "note": "<script>alert(1)</script>"}
    status, eve = await console_stack.api("POST", "/admin/keys", body)
    assert status == HTTPStatus.CREATED
    console_stack.secrets.add(eve["token"])
    page = await signed_in.get(f"/admin/ui/keys/{eve['id']}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert [s.attrs.get("src") for s in page.doc.find_all("script")] == [
        s.attrs.get("src")
        for s in (await signed_in.get("/admin/ui/keys")).doc.find_all("script")
    ]


async def test_with_redis_the_numbers_are_the_fleets(
    redis_console: RedisConsole,
) -> None:
    """state.backend redis: the fleet counters feed the table; last used is a day."""
    admin = redis_console.admin
    ops, bob = redis_console.ops, redis_console.bob
    assert ops.token is not None
    browser = ConsoleClient(admin)
    assert (await browser.sign_in(ops.token)).status == HTTPStatus.OK
    page = await browser.get("/admin/ui/keys")
    row = cells(page.doc.by_id("keys-table"))[bob.record.id]
    resp = await admin.get("/admin/usage?by=key", headers=bearer_auth(ops.token))
    status, usage = resp.status, await resp.json()
    assert status == HTTPStatus.OK
    assert usage["source"] == "redis"
    expected = sum(r["requests"] for r in usage["rows"] if r["key_id"] == bob.record.id)
    assert int(row["requests today"]) == expected >= 2
    assert row["last used"] == utc_now().date().isoformat()
