"""The ``authproxy audit verify`` and ``authproxy usage`` commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from authproxy.cli.common import printable
from authproxy.config.model import Config
from authproxy.errors import ConfigError
from authproxy.metering.audit import rotated_files
from authproxy.metering.chain import verify_files
from authproxy.metering.report import DIMENSIONS, aggregate, as_rows, read_records
from authproxy.times import parse_when, utc_now

AddOptions = Callable[[argparse.ArgumentParser], None]


def add_audit_commands(commands: Any, add_options: AddOptions) -> None:
    """Register ``audit verify`` and ``usage``."""
    audit = commands.add_parser("audit", help="check the audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify",
        help="verify the hash chain of audit files",
        description="Verify audit files, oldest first, as one hash chain. Reports "
        "the first broken, missing or edited line and exits 1. Torn lines left by "
        "a full disk, whose record was written whole after them, are warnings.",
    )
    add_options(verify)
    verify.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="audit files, oldest first (default: audit.file and its backups)",
    )
    verify.set_defaults(handler=cmd_verify)

    usage = commands.add_parser(
        "usage",
        help="report token usage from the audit log",
        description="Sum requests and tokens per key, model and/or day.",
    )
    add_options(usage)
    usage.add_argument(
        "--audit-log",
        metavar="FILE",
        action="append",
        dest="audit_files",
        help="audit file (repeatable; default: audit.file and its backups)",
    )
    usage.add_argument(
        "--since", metavar="T", help="RFC 3339 time, or a duration ago (7d)"
    )
    usage.add_argument("--until", metavar="T", help="RFC 3339 time, or a duration ago")
    usage.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="key|model|day",
        help="group by a dimension (repeatable, or comma-separated)",
    )
    usage.add_argument("--json", action="store_true", help="print JSON")
    usage.set_defaults(handler=cmd_usage)


def _files(given: list[str] | None, config: Config) -> list[Path]:
    if given:
        return [Path(f) for f in given]
    return rotated_files(Path(config.audit.file))


def cmd_verify(args: argparse.Namespace, config: Config) -> int:
    """Verify the chain; exit 1 on the first problem."""
    files = _files(args.files, config)
    if not args.files and config.audit.file == "-":
        print("authproxy: audit.file is '-' (stdout): name the files", file=sys.stderr)
        return 1
    wanted = args.files or ([] if files else [config.audit.file])
    missing = [Path(f).absolute() for f in wanted if not Path(f).exists()]
    if missing:
        print(f"authproxy: no audit log at {printable(missing[0])}", file=sys.stderr)
        return 1
    report = verify_files(files)
    for warning in report.warnings:
        print(f"warning: {printable(warning)}")
    if not report.ok:
        print(f"FAILED after {report.records} good records: {printable(report.error)}")
        return 1
    torn = f", {report.torn} torn line(s) skipped" if report.torn else ""
    print(f"ok: {report.records} records in {report.files} file(s){torn}")
    return 0


def parse_point(text: str | None, now: datetime) -> datetime | None:
    """Parse ``--since``/``--until``: a timestamp, or a duration before now.

    Raises:
        ConfigError: the text is neither, or it is out of range.
    """
    if text is None:
        return None
    try:
        return parse_when(text, now, ago=True)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def cmd_usage(args: argparse.Namespace, config: Config) -> int:
    """Print usage per group as a table or JSON."""
    by = [d.strip() for item in args.by for d in item.split(",") if d.strip()]
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ConfigError(f"--by: unknown dimension {unknown[0]!r} (key, model, day)")
    now = utc_now()
    since, until = parse_point(args.since, now), parse_point(args.until, now)
    files = [p for p in _files(args.audit_files, config) if p.exists()]
    groups = aggregate(read_records(files), by=by, since=since, until=until)
    rows = as_rows(groups, by)
    if args.json:
        print(json.dumps(rows))
        return 0
    columns = [*by, "requests", "denied", "prompt_tokens", "completion_tokens"]
    columns += ["total_tokens", "estimated_share"]
    # Model names come from clients; key names and days from the audit file.
    table = [columns] + [[printable(_cell(row[c])) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1%}"
    return str(value)
