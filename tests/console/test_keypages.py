"""console.keypages: the keys table and the page of one key."""

from __future__ import annotations

from http import HTTPStatus

from tests.support.admin import Stack
from tests.support.console import ConsoleClient


async def test_the_keys_table_has_a_row_per_key(
    signed_in: ConsoleClient, console_stack: Stack
) -> None:
    """alice and ops, each a tr[data-key-id] linking to its page."""
    status, listed = await console_stack.api("GET", "/admin/keys")
    assert status == HTTPStatus.OK
    page = await signed_in.get("/admin/ui/keys")
    rows = page.doc.by_id("keys-table").find_all("tr")[1:]
    assert sorted(r.attrs["data-key-id"] for r in rows) == sorted(
        k["id"] for k in listed["keys"]
    )
    assert page.doc.by_id("new-key").attrs["href"] == "/admin/ui/keys/new"
