"""The edge of the admin listener: the one place its errors become HTTP.

It runs first: it assigns the request id and binds the log context, then
answers whatever the guard, authentication or a handler raised: ``Denied``
with its status, a bad input with 400 naming the field, an unknown key with
404, and an unexpected exception with a logged JSON 500 (never a traceback on
the wire). The router's own refusals (an unknown path 404, a wrong method 405
with its ``Allow``) are answered in the same JSON shape.
"""

from __future__ import annotations

import structlog
from aiohttp import hdrs, web

from authproxy.admin.body import BadRequestError
from authproxy.errors import (
    Denied,
    KeyNotFoundError,
    KeyStoreError,
    KeyStoreUnavailableError,
)
from authproxy.proxy.headers import REQUEST_ID_HEADER
from authproxy.responses import Handler, json_error
from authproxy.web.edge import bind_request

log = structlog.stdlib.get_logger(__name__)


@web.middleware
async def admin_edge_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Bind the request, run it, and answer its errors in JSON."""
    rid = bind_request(request)
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        allow = err.headers.get(hdrs.ALLOW)
        response = json_error(
            err.status, err.reason.lower(), ((hdrs.ALLOW, allow),) if allow else ()
        )
    except Denied as err:
        response = json_error(err.status, err.message, err.headers)
    except BadRequestError as err:
        response = json_error(400, str(err))
    except KeyNotFoundError:
        response = json_error(404, "key not found")
    except KeyStoreUnavailableError:  # Redis down: retry, not a bad request
        response = json_error(503, "key store unavailable", (("Retry-After", "1"),))
    except KeyStoreError as err:
        response = json_error(400, str(err))
    except Exception:
        log.exception("request_failed")
        response = json_error(500, "internal error")
    response.headers[REQUEST_ID_HEADER] = rid
    return response
