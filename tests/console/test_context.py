"""console.context: the flash message outlives one redirect, then goes."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web

from authproxy.console.context import see_other


def test_see_other_is_a_plain_303() -> None:
    """A response, not a raised exception: cookies can be set on it."""
    response = see_other("/admin/ui/keys")
    assert isinstance(response, web.Response)
    assert response.status == HTTPStatus.SEE_OTHER
    assert response.headers["Location"] == "/admin/ui/keys"
