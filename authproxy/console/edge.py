"""The console's edge: its errors become HTML pages with the right status.

It runs inside the admin listener's own edge (which binds the request id and
would answer in JSON), so a browser sees a page, never a JSON body or a
traceback. Bad input is a 400 naming the field, an unknown key a 404, a
refusal its own status (401, 403, 429, 503), and a bug a logged 500.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Final

import structlog
from aiohttp import hdrs, web

from authproxy.admin.body import BadRequestError
from authproxy.console.render import render
from authproxy.errors import (
    Denied,
    KeyNotFoundError,
    KeyStoreError,
    KeyStoreUnavailableError,
)
from authproxy.responses import Handler

log = structlog.stdlib.get_logger(__name__)

_RETRY: Final = (("Retry-After", "1"),)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def error_page(
    request: web.Request,
    status: int,
    message: str,
    headers: tuple[tuple[str, str], ...] = (),
) -> web.Response:
    """Render the error page (``main#error``) with ``status`` and ``message``."""
    return await render(
        request,
        "error.html",
        {"status": status, "title": _title(status), "message": message},
        status=status,
        headers=dict(headers),
    )


@web.middleware
async def console_edge_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Run the request and answer what it raised as an HTML page."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        allow = err.headers.get(hdrs.ALLOW)
        status, message = err.status, err.reason
        headers: tuple[tuple[str, str], ...] = ((hdrs.ALLOW, allow),) if allow else ()
    except Denied as err:
        status, message, headers = err.status, err.message, err.headers
    except BadRequestError as err:
        status, message, headers = 400, str(err), ()
    except KeyNotFoundError:
        status, message, headers = 404, "key not found", ()
    except KeyStoreUnavailableError:  # Redis down: retry, not a bad request
        status, message, headers = 503, "store unavailable, retry", _RETRY
    except KeyStoreError as err:
        status, message, headers = 400, str(err), ()
    except Exception:
        log.exception("request_failed")
        status, message, headers = 500, "internal error", ()
    return await error_page(request, status, message, headers)
