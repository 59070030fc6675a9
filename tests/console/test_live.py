"""console.live: the last requests, on the page and in the polled fragment."""

from __future__ import annotations

from http import HTTPStatus

from authproxy.keys.lifecycle import CreatedKey
from tests.support.admin import Stack
from tests.support.console import ConsoleClient, parse_html
from tests.support.payloads import CHAT


async def test_a_request_through_the_proxy_shows_on_the_live_page(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """A chat and a refused call appear, newest first, with key, model and status."""
    assert key.token is not None
    assert await console_stack.call(key.token, "POST", "/api/chat", CHAT) == 200
    assert await console_stack.call("wrong-token", "GET", "/api/tags") == 401
    page = await signed_in.get("/admin/ui/live")
    assert page.status == HTTPStatus.OK
    table = page.doc.by_id("live-table")
    rows = table.find_all("tr", class_="live-row")
    assert len(rows) == 2
    refused = [td.text for td in rows[0].find_all("td")]
    chat = [td.text for td in rows[1].find_all("td")]
    assert refused[4] == "401"
    assert "denied" in refused[7]
    assert "alice" in chat[1]
    assert key.record.id in chat[1]
    assert chat[2] == CHAT["model"] or chat[2].startswith(str(CHAT["model"]))
    assert "/api/chat" in chat[3]
    assert chat[4] == "200"
    assert int(chat[5]) > 0
    assert float(chat[6]) >= 0
    assert chat[7] == "completed"
    assert key.token not in page.text
    assert "this proxy process" in page.text
    assert "style=" not in page.text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


async def test_the_page_refreshes_itself_with_and_without_script(
    signed_in: ConsoleClient,
) -> None:
    """The tbody names the fragment to poll; a noscript refresh covers no-JS."""
    page = await signed_in.get("/admin/ui/live")
    body = page.doc.by_id("live-table").find("tbody")
    assert body is not None
    assert body.attrs["data-poll"] == "/admin/ui/live/rows"
    assert body.attrs["data-every"] == "2000"
    noscript = page.doc.find("noscript")
    assert noscript is not None
    assert '<meta http-equiv="refresh" content="5">' in page.text


async def test_the_fragment_is_the_rows_alone(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """The poller gets tr.live-row elements, no layout, never cached."""
    assert key.token is not None
    assert await console_stack.call(key.token) == 200
    resp = await signed_in.client.get("/admin/ui/live/rows")
    assert resp.status == HTTPStatus.OK
    assert resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    text = await resp.text()
    assert "<nav" not in text
    rows = parse_html(text).find_all("tr", class_="live-row")
    assert len(rows) == 1
    assert "/api/tags" in rows[0].text


async def test_polling_keeps_the_flash_message(
    signed_in: ConsoleClient, console_stack: Stack, key: CreatedKey
) -> None:
    """A poll between a write and its page does not take the page's flash."""
    done = await signed_in.submit(
        f"/admin/ui/keys/{key.record.id}/disable",
        {"confirm": "yes"},
        allow_redirects=False,
    )
    assert done.status == HTTPStatus.SEE_OTHER
    resp = await signed_in.client.get("/admin/ui/live/rows")
    assert resp.status == HTTPStatus.OK
    shown = await signed_in.get(f"/admin/ui/keys/{key.record.id}")
    assert shown.doc.find("p", class_="flash") is not None


async def test_signed_out_the_live_pages_lead_to_login(browser: ConsoleClient) -> None:
    """Without a session neither the page nor the fragment shows anything."""
    for path in ("/admin/ui/live", "/admin/ui/live/rows"):
        resp = await browser.client.get(path, allow_redirects=False)
        assert resp.status == HTTPStatus.SEE_OTHER
        assert resp.headers["Location"].startswith("/admin/ui/login")
