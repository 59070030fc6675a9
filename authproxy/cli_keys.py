"""The ``authproxy keys`` commands: create, list, revoke."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from authproxy.config import Config
from authproxy.errors import KeyStoreError
from authproxy.keyadmin import create_key, describe, format_when, revoke_key
from authproxy.keystore import KeyTable, make_hasher, read_store
from authproxy.times import parse_when, utc_now

AddOptions = Callable[[argparse.ArgumentParser], None]


def add_keys_commands(commands: Any, add_options: AddOptions) -> None:
    """Register ``keys create|list|revoke`` under ``commands``."""
    keys = commands.add_parser("keys", help="manage API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    create = sub.add_parser(
        "create",
        help="create a key and print its token once",
        description="Create a key. The token is printed once and never stored.",
    )
    add_options(create)
    create.add_argument("name", help="unique key name (also the Basic username)")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a chosen password from stdin (Basic auth only) instead of "
        "generating a token",
    )
    create.add_argument(
        "--expires",
        metavar="WHEN",
        help="expiry: RFC 3339 time (2027-01-31T00:00:00Z) or a duration (30d, 12h)",
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(handler=cmd_create)

    listing = sub.add_parser("list", help="list keys (never secrets or hashes)")
    add_options(listing)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=cmd_list)

    revoke = sub.add_parser("revoke", help="revoke a key by id or name")
    add_options(revoke)
    revoke.add_argument("ref", metavar="ID|NAME", help="key id or name")
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(handler=cmd_revoke)


def cmd_create(args: argparse.Namespace, config: Config) -> int:
    """Create a key; print the token once."""
    now = utc_now()
    try:
        expires_at = parse_when(args.expires, now) if args.expires else None
    except ValueError as err:
        raise KeyStoreError(f"--expires: {err}") from None
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    created = create_key(
        Path(config.keys.file),
        make_hasher(config.keys.argon2),
        args.name,
        now=now,
        expires_at=expires_at,
        password=password,
    )
    record = created.record
    if args.json:
        print(json.dumps(created.as_dict()))
        return 0
    print(f"Created key {record.name!r} (id {record.id}, {record.kind}).")
    print(f"Expires: {format_when(record.expires_at)}")
    if created.token is not None:
        print("Token (shown once; it cannot be recovered):")
        print(created.token)
    else:
        print(f"Use HTTP Basic auth with username {record.name!r} or {record.id!r}.")
    return 0


def cmd_list(args: argparse.Namespace, config: Config) -> int:
    """List keys without secrets or hashes."""
    path = Path(config.keys.file)
    table = read_store(path) if path.exists() else KeyTable()
    now = utc_now()
    rows = [describe(r, now) for r in table.records]
    if args.json:
        print(json.dumps(rows))
        return 0
    headers = ("ID", "NAME", "KIND", "STATUS", "CREATED", "EXPIRES")
    lines = [headers] + [
        (
            r["id"],
            r["name"],
            r["kind"],
            r["status"],
            r["created_at"],
            r["expires_at"] or "-",
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(headers))]
    for line in lines:
        print("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)))
    return 0


def cmd_revoke(args: argparse.Namespace, config: Config) -> int:
    """Revoke a key by id or name."""
    now = utc_now()
    record, changed = revoke_key(Path(config.keys.file), args.ref, now=now)
    if args.json:
        print(json.dumps({**describe(record, now), "changed": changed}))
    elif changed:
        print(f"Revoked key {record.name!r} (id {record.id}).")
    else:
        print(f"Key {record.name!r} (id {record.id}) was already revoked.")
    return 0
