"""The admin console's usage and live pages, and every page's CSP, in chromium.

Like test_console_browser.py, one stack (three seeded keys, two weeks of
traffic) and one browser serve the module. Requests sent through the proxy
port show up on the live page by themselves and in the usage tables; every
page carries the CSP, loads nothing from elsewhere and fits a phone's width.
"""

from __future__ import annotations

from typing import Final

import pytest

from tests.support.browser import CSP, Console, browser_needed
from tests.support.pages import (
    create_key,
    page_faults,
    proxy_status,
    signed_in,
)
from tests.support.threadstack import ThreadStack

pytestmark = browser_needed

# The console's pages; {id} is the seeded build-bot key.
PAGES: Final = (
    "/admin/ui/login",
    "/admin/ui/keys",
    "/admin/ui/keys/new",
    "/admin/ui/keys/{id}",
    "/admin/ui/usage",
    "/admin/ui/usage?days=90&by=model",
    "/admin/ui/live",
)
PAGE_IDS: Final = ("login", "keys", "new-key", "key", "usage", "usage-90", "live")
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def test_screenshots_of_the_usage_and_live_pages(
    console: Console, browser_stack: ThreadStack
) -> None:
    """The usage charts and the live table render the seeded traffic and today's."""
    for name in ("build-bot", "notebook"):
        token = browser_stack.keys[name].token
        assert token is not None
        assert proxy_status(browser_stack, token, "llama3.2:latest") == 200
    signed_in(console, browser_stack)
    console.open("/admin/ui/usage?days=30&by=key")
    console.wait_for("figure#usage-tokens-chart svg")
    console.screenshot("usage", docs=True)
    console.open("/admin/ui/live")
    console.until(
        lambda: len(console.find_all("tr.live-row")) >= 2, "live rows missing"
    )
    console.screenshot("live", docs=True)


def test_a_request_appears_on_the_live_page_without_a_reload(
    console: Console, browser_stack: ThreadStack
) -> None:
    """The live table picks up a new request by itself (the page is not reloaded)."""
    signed_in(console, browser_stack)
    key_id, token = create_key(console, browser_stack, "live-probe")
    console.open("/admin/ui/live")
    console.wait_for("table#live-table")
    console.driver.execute_script("window.stillHere = true")
    assert proxy_status(browser_stack, token, "qwen3:8b") == 200

    def probe_rows() -> list[str]:
        return [r.text for r in console.find_all("tr.live-row") if key_id in r.text]

    console.until(probe_rows, "the request never appeared on the live page")
    row = probe_rows()[0]
    assert "live-probe" in row
    assert "qwen3:8b" in row
    assert "200" in row
    assert token not in console.driver.page_source
    assert console.driver.execute_script("return window.stillHere === true")


def test_a_request_counts_in_the_usage_tables_and_csv(
    console: Console, browser_stack: ThreadStack
) -> None:
    """A key's tokens reach the usage page; every CSV link answers a CSV file."""
    signed_in(console, browser_stack)
    _, token = create_key(console, browser_stack, "usage-probe")
    assert proxy_status(browser_stack, token, "llama3.2:latest") == 200

    def counted() -> bool:
        console.open("/admin/ui/usage?days=7&by=key")
        return "usage-probe" in console.text("table#top-keys")

    console.until(counted, "usage-probe never showed in the top keys")
    assert console.find_all("figure#usage-tokens-chart svg")
    assert console.find_all("table#top-models")
    assert console.find_all("table#denied-reasons")
    links = [a.get_attribute("href") or "" for a in console.find_all("a.csv-link")]
    assert len(links) >= 4
    for link in links:
        assert link.startswith(console.base + "/admin/ui/usage.csv?")
        status, headers, body = console.fetch(link[len(console.base) :])
        assert status == 200
        assert headers["Content-Type"].startswith("text/csv")
        assert headers["Content-Disposition"].startswith("attachment")
        assert b"," in body.splitlines()[0]
    status, _, body = console.fetch("/admin/ui/usage.csv?chart=top-keys&days=7&by=key")
    assert b"usage-probe" in body


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_the_page_has_the_csp_and_loads_nothing_from_outside(
    console: Console, browser_stack: ThreadStack, page: str
) -> None:
    """The page is well formed, it and its files carry the CSP, nothing is foreign."""
    if page != "/admin/ui/login":
        signed_in(console, browser_stack)
    path = page.format(id=browser_stack.keys["build-bot"].record.id)
    console.open(path)
    console.wait_for("main")
    assert console.path == path
    assert page_faults(console) == []
    assert console.outside_loads() == []
    loaded = console.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    statics = sorted(u[len(console.base) :] for u in loaded if "/static/" in u)
    assert len(statics) >= 2, "the page loaded no console.css or console.js"
    for url in [path, *statics]:
        status, headers, _ = console.fetch(url)
        assert status == 200, url
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value, (url, name)


@pytest.mark.parametrize(
    ("page", "content"),
    [
        ("/admin/ui/keys", "table#keys-table"),
        ("/admin/ui/usage", "figure#usage-tokens-chart"),
        ("/admin/ui/live", "table#live-table"),
    ],
    ids=["keys", "usage", "live"],
)
def test_a_phone_gets_no_sideways_page_scroll(
    console: Console, browser_stack: ThreadStack, page: str, content: str
) -> None:
    """On a phone-width viewport the page fits; wide tables scroll in their box."""
    signed_in(console, browser_stack)
    console.emulate_phone()
    console.open(page)
    console.wait_for(content)
    assert not console.page_overflows(), page
    console.screenshot("phone-" + page.rsplit("/", 1)[1])
