"""console.edge: errors under /admin/ui/ are HTML pages with the right status."""

from __future__ import annotations

from http import HTTPStatus

from tests.support.console import ConsoleClient


async def test_a_signed_out_post_is_a_401_page(browser: ConsoleClient) -> None:
    """A form sent after the session ended: 401 page with a sign-in link."""
    page = await browser.submit("/admin/ui/logout", csrf="x")
    assert page.status == HTTPStatus.UNAUTHORIZED
    assert page.headers["Content-Type"].startswith("text/html")
    link = page.doc.by_id("error").find("a")
    assert link is not None
    assert link.attrs["href"] == "/admin/ui/login"


async def test_an_unknown_page_is_a_404_page_not_json(signed_in: ConsoleClient) -> None:
    """The admin API would answer JSON; the console answers a page."""
    page = await signed_in.get("/admin/ui/keys/zzzzzzzzzzzz/nothing")
    assert page.status == HTTPStatus.NOT_FOUND
    assert page.doc.by_id("error").find(class_="error") is not None
