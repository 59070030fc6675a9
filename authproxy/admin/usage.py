"""``GET /admin/usage``: from the audit log, or from the fleet's counters in Redis.

With the file backend the report sums this proxy's audit file and its backups
(``"source": "audit"``). With ``state.backend: redis`` every replica counts its
requests in Redis (``metering.fleet``), so the report is the whole fleet's,
over the whole UTC days the window touches (``"source": "redis"`` and the
``days`` read). Both have the same rows, grouped by the same rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import structlog
from aiohttp import web

from authproxy.admin.body import parse_usage_query
from authproxy.errors import Denied
from authproxy.metering.logfiles import rotated_files
from authproxy.metering.report import aggregate, as_rows, read_records
from authproxy.state.connection import RedisError
from authproxy.web.appkeys import CONFIG_KEY, FLEET_USAGE_KEY, VERIFIER_KEY

log = structlog.stdlib.get_logger(__name__)

UNAVAILABLE: Final = "usage counters unavailable"


async def usage_data(
    main: web.Application,
    by: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> dict[str, Any]:
    """Return the usage report of the proxy application ``main`` as a JSON object.

    The admin API's ``GET /admin/usage`` and the console both read usage here,
    so they show the same numbers from the same source.

    Raises:
        Denied: 503 when the fleet's counters cannot be read from Redis.
    """
    names = {r.id: r.name for r in main[VERIFIER_KEY].table.records}
    counters = main.get(FLEET_USAGE_KEY)
    if counters is not None:
        await counters.flush()  # this replica's own requests so far
        try:
            rows, first, last = await counters.report(by, since, until, now, names)
        except (RedisError, OSError):
            log.error("usage_counters_unreadable")
            raise Denied(
                503, "usage_unavailable", UNAVAILABLE, (("Retry-After", "1"),)
            ) from None
        days = {"from": first.isoformat(), "to": last.isoformat()}
        return {"by": list(by), "rows": rows, "source": "redis", "days": days}
    audit_file = Path(main[CONFIG_KEY].audit.file)

    def compute() -> list[dict[str, Any]]:
        files = [p for p in rotated_files(audit_file) if p.exists()]
        return as_rows(
            aggregate(read_records(files), by=by, since=since, until=until), by, names
        )

    rows = await asyncio.get_running_loop().run_in_executor(None, compute)
    return {"by": list(by), "rows": rows, "source": "audit"}


async def usage_report(
    main: web.Application, query: Mapping[str, str], now: datetime
) -> web.Response:
    """Answer a usage query (``by``, ``since``, ``until``) for the application ``main``.

    Raises:
        BadRequestError: a bad ``by``, ``since`` or ``until``.
        Denied: 503 when the fleet's counters cannot be read from Redis.
    """
    by, since, until = parse_usage_query(query, now)
    return web.json_response(await usage_data(main, by, since, until, now))
