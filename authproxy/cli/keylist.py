"""``authproxy keys list``: every key without secrets, with its recent activity.

Activity (last use, requests and tokens today and over 30 days) comes from one
pass over the audit log, counted as ``authproxy usage`` counts; without a
readable log the list still works and says why the columns are missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Final

from authproxy.cli.audit import missing_log
from authproxy.cli.common import load_table, printable
from authproxy.config.model import Config
from authproxy.keys.codec import describe
from authproxy.metering.activity import Activity, key_activity
from authproxy.metering.logfiles import rotated_files
from authproxy.metering.report import read_records
from authproxy.times import utc_now


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    """List keys without secrets or hashes."""
    table = load_table(config)
    now = utc_now()
    activity = _activity(config, now)
    rows = [describe(r, now) for r in table.records]
    if args.json:
        for row in rows:
            row["activity"] = (
                activity.get(row["id"], Activity()).as_dict()
                if activity is not None
                else None
            )
        print(json.dumps({"keys": rows}))
        return 0
    headers: tuple[str, ...] = ("ID", "NAME", "KIND", "STATUS", "SCOPES", "MODELS")
    headers += ("CREATED", "EXPIRES")
    if activity is not None:
        headers += ACTIVITY_HEADERS
    lines = [(*headers, "FINGERPRINT")] + [
        (
            r["id"],
            r["name"],
            r["kind"],
            r["status"],
            ",".join(r["scopes"]),
            ",".join(r["models"]) or "*",
            r["created_at"],
            r["expires_at"] or "-",
            *(_activity_cells(activity, r["id"]) if activity is not None else ()),
            r.get("fingerprint") or "-",
        )
        for r in rows
    ]
    cells = [[printable(v) for v in line] for line in lines]
    widths = [max(len(line[i]) for line in cells) for i in range(len(lines[0]))]
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0


# Shown when the audit log can be read (see metering.activity).
ACTIVITY_HEADERS: Final = (
    "LAST_USED",
    "REQ_TODAY",
    "TOKENS_TODAY",
    "REQ_30D",
    "TOKENS_30D",
)


def _activity(config: Config, now: datetime) -> dict[str, Activity] | None:
    """Read every key's activity in one pass; ``None``, with a note, if no log."""
    problem = missing_log(None, config)
    if problem is None:
        try:
            files = rotated_files(Path(config.audit.file))
            return key_activity(read_records(files), now)
        except OSError as err:
            where = Path(str(err.filename)).absolute()
            problem = f"cannot read {where}: {err.strerror or 'read error'}"
    print(f"note: {printable(problem)}; activity columns left out", file=sys.stderr)
    return None


def _activity_cells(activity: dict[str, Activity], key_id: str) -> tuple[str, ...]:
    data = activity.get(key_id, Activity()).as_dict()
    return (
        data["last_used_at"] or "never",
        str(data["requests_today"]),
        str(data["tokens_today"]),
        str(data["requests_30d"]),
        str(data["tokens_30d"]),
    )
