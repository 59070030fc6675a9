"""The ``authproxy audit verify`` and ``authproxy usage`` commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from authproxy.cli.common import printable, store, store_exists
from authproxy.config.model import Config
from authproxy.errors import ConfigError, KeyStoreError
from authproxy.keys.store import read_store
from authproxy.metering.chain import split_chains, verify_files
from authproxy.metering.logfiles import rotated_files
from authproxy.metering.report import DIMENSIONS, aggregate, as_rows, read_records
from authproxy.times import parse_when, utc_now

# What the two counts mean; printed under the table and in --help.
LEGEND: Final = (
    "requests: admitted by authproxy and sent to Ollama (or tried: every outcome "
    "but denied), whatever Ollama answered",
    "denied: refused by authproxy itself (outcome denied: credentials, scopes, "
    "model allow-lists, limits, bad bodies); never sent to Ollama, no tokens",
)

AddOptions = Callable[[argparse.ArgumentParser], None]


def add_audit_commands(commands: Any, add_options: AddOptions) -> None:
    """Register ``audit verify`` and ``usage``."""
    audit = commands.add_parser("audit", help="check the audit log")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = sub.add_parser(
        "verify",
        help="verify the hash chain of audit files",
        description="Verify the hash chain of audit files. A file and its numbered "
        "backups (a.jsonl.2 a.jsonl.1 a.jsonl) are one chain; the files of other "
        "replicas (b.jsonl) are chains of their own, each verified and reported "
        "apart. Reports the first broken, missing or edited line of a chain and "
        "exits 1. Torn lines left by a full disk, whose record was written whole "
        "after them, are warnings.",
    )
    add_options(verify)
    verify.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="audit files, any replicas' (default: audit.file and its backups)",
    )
    verify.set_defaults(handler=cmd_verify)

    usage = commands.add_parser(
        "usage",
        help="report token usage from the audit log",
        description="Sum requests and tokens per key (by id, shown with its "
        "current name), model (as Ollama resolves the name: llama3.2 is "
        "llama3.2:latest), day (UTC) and/or replica (server.replica), over "
        "every file given: several replicas' files are summed. "
        + "; ".join(LEGEND)
        + ".",
    )
    add_options(usage)
    usage.add_argument(
        "--audit-log",
        metavar="FILE",
        action="append",
        dest="audit_files",
        help="audit file (repeatable, e.g. one per replica; backups are read only "
        "when given; default: audit.file and its backups)",
    )
    usage.add_argument(
        "--since", metavar="T", help="RFC 3339 time, or a duration ago (7d)"
    )
    usage.add_argument("--until", metavar="T", help="RFC 3339 time, or a duration ago")
    usage.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="key|model|day|replica|reason",
        help="group by a dimension (repeatable, or comma-separated)",
    )
    usage.add_argument("--json", action="store_true", help="print JSON")
    usage.set_defaults(handler=cmd_usage)


def _files(given: list[str] | None, config: Config) -> list[Path]:
    if given:
        return [Path(f) for f in given]
    return rotated_files(Path(config.audit.file))


def missing_log(given: list[str] | None, config: Config) -> str | None:
    """Say why there is no audit log to read, or return ``None`` if there is one.

    Given files must all exist; the configured log must exist or have backups.
    Paths are shown absolute: a relative one says nothing about where it was
    looked for.
    """
    if given:
        for name in given:
            if not Path(name).exists():
                return f"no audit log at {Path(name).absolute()}"
        return None
    if config.audit.file == "-":
        return "audit.file is '-' (standard output): no file to read"
    if not rotated_files(Path(config.audit.file)):
        return f"no audit log at {Path(config.audit.file).absolute()}"
    return None


def _key_names(config: Config) -> dict[str, str]:
    """Map key ids to their names in the key store (empty without a store)."""
    path = store(config)
    try:
        if not store_exists(path):
            return {}
        table = read_store(path)
    except KeyStoreError:
        return {}  # names then come from the records
    return {r.id: r.name for r in table.records}


def cmd_verify(args: argparse.Namespace, config: Config) -> int:
    """Verify the chain; exit 1 on the first problem."""
    problem = missing_log(args.files, config)
    if problem is not None:
        print(f"authproxy: {printable(problem)}", file=sys.stderr)
        return 1
    chains = split_chains(_files(args.files, config))
    if len(chains) == 1:
        return 0 if _verify_chain(chains[0], "") else 1
    # Several replicas' files: each file with its backups is its own chain.
    failed = [c for c in chains if not _verify_chain(c, f"{c[-1]}: ")]
    total = len(chains)
    if failed:
        print(f"FAILED: {len(failed)} of {total} chains")
        return 1
    print(f"ok: {total} chains")
    return 0


def _verify_chain(files: list[Path], label: str) -> bool:
    """Verify one chain and print its result, prefixed by ``label``."""
    report = verify_files(files)
    for warning in report.warnings:
        print(f"warning: {printable(warning)}")
    if not report.ok:
        head = f"FAILED: {printable(label)}after" if label else "FAILED after"
        print(f"{head} {report.records} good records: {printable(report.error)}")
        return False
    torn = f", {report.torn} torn line(s) skipped" if report.torn else ""
    where = printable(label)
    print(f"ok: {where}{report.records} records in {report.files} file(s){torn}")
    return True


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
        raise ConfigError(
            f"--by: unknown dimension {unknown[0]!r} (key, model, day, replica, reason)"
        )
    now = utc_now()
    since, until = parse_point(args.since, now), parse_point(args.until, now)
    problem = missing_log(args.audit_files, config)
    if problem is not None:
        print(f"authproxy: {printable(problem)}", file=sys.stderr)
        return 1
    files = _files(args.audit_files, config)
    try:
        groups = aggregate(read_records(files), by=by, since=since, until=until)
    except OSError as err:
        reason = err.strerror or "read error"
        where = Path(str(err.filename)).absolute()
        print(f"authproxy: cannot read {printable(where)}: {reason}", file=sys.stderr)
        return 1
    rows = as_rows(groups, by, _key_names(config) if "key" in by else None)
    if args.json:
        print(json.dumps(rows))
        return 0
    columns = [c for d in by for c in (("key_id", "key") if d == "key" else (d,))]
    columns += ["requests", "denied", "prompt_tokens", "completion_tokens"]
    columns += ["total_tokens", "estimated_share"]
    # Model names come from clients; key names and days from the audit file.
    table = [columns] + [[printable(_cell(row[c])) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    print()
    print("\n".join(LEGEND))
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1%}"
    return str(value)
