"""The ``authproxy keys`` commands: create, show, update, rotate, passwd, revoke.

Human output passes stored text through ``printable``: a note set through the
admin API may carry terminal escape sequences.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from authproxy.cli.common import (
    announce_new_store,
    existing_store,
    load_table,
    log_action,
    print_result,
    printable,
    read_public_key,
    store,
    store_exists,
)
from authproxy.config.model import Config
from authproxy.errors import KeyStoreError
from authproxy.keys.codec import describe
from authproxy.keys.lifecycle import (
    KeySpec,
    create_key,
    find_key,
    format_when,
    revoke_key,
    rotate_key,
    update_key,
)
from authproxy.keys.record import DEFAULT_SCOPES
from authproxy.keys.store import make_hasher
from authproxy.times import parse_duration, parse_when, utc_now

LIMIT_FLAGS = (
    ("--rpm", "requests_per_minute"),
    ("--concurrency", "concurrent"),
    ("--tokens-per-day", "tokens_per_day"),
    ("--tokens-per-month", "tokens_per_month"),
)


def _limits(args: argparse.Namespace) -> dict[str, Any] | None:
    given = {
        n: getattr(args, n) for _, n in LIMIT_FLAGS if getattr(args, n) is not None
    }
    return given or None


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
    spec = KeySpec(
        limits=_limits(args),
        name=args.name,
        scopes=tuple(args.scopes) if args.scopes is not None else DEFAULT_SCOPES,
        models=tuple(args.models or ()),
        expires_at=expires_at,
        note=args.note,
        password=password,
        ollama_public_key=read_public_key(args.ollama_public_key),
    )
    path = store(config)
    new_store = not store_exists(path)
    created = create_key(path, make_hasher(config.keys.argon2), spec, now=now)
    if new_store:
        announce_new_store(config)
    record = created.record
    log_action(
        config,
        "create",
        key_id=record.id,
        key_name=record.name,
        detail={"scopes": list(record.scopes), "models": list(record.models)},
    )
    if args.json:
        print(json.dumps(created.as_dict(now)))
        return 0
    print(f"Created key {record.name!r} (id {record.id}, {record.kind}).")
    models = ", ".join(record.models) or "all"
    print(f"Scopes: {', '.join(record.scopes)}; models: {models}")
    print(f"Expires: {format_when(record.expires_at)}")
    if created.token is not None:
        print("Token (shown once; it cannot be recovered):")
        print(created.token)
    elif record.kind == "ollama":
        print(
            f"Public key {record.fingerprint}: run the ollama CLI with OLLAMA_AUTH=1."
        )
    else:
        print(f"Use HTTP Basic auth with username {record.name!r} or {record.id!r}.")
    return 0


def cmd_show(args: argparse.Namespace, config: Config) -> int:
    """Show one key: aligned fields, or with ``--json`` the admin API's object."""
    data = describe(find_key(load_table(config), args.ref), utc_now())
    first = ("id", "name", "kind", "status")
    names = [*first, *(k for k in data if k not in first)]
    width = max(len(k) for k in names) + 1
    # Made printable per field: a note's newline must not start a line of its own.
    lines = [f"{k + ':':<{width}} {printable(_shown(k, data[k]))}" for k in names]
    print_result(args, data, "\n".join(line.rstrip() for line in lines))
    return 0


def _shown(name: str, value: Any) -> str:
    """Render one field of ``keys show`` for a person (never a Python repr)."""
    if value is None or value == []:
        return "all" if name == "models" else "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "limits":
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
    if name == "previous":
        # Secrets replaced by a rotation, still valid until their time.
        return "; ".join(
            " ".join(str(p[k]) for k in ("until", "fingerprint") if p.get(k))
            for p in value
        )
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def cmd_update(args: argparse.Namespace, config: Config) -> int:
    """Change a key's policy or state."""
    now = utc_now()
    path = existing_store(config)
    changes: dict[str, Any] = {}
    if args.scopes is not None:
        changes["scopes"] = args.scopes
    if args.models is not None:
        changes["models"] = args.models
    if args.note is not None:
        changes["note"] = args.note
    limits = _limits(args)
    if limits is not None:
        record = find_key(load_table(config), args.ref)
        changes["limits"] = {**record.limits.as_dict(), **limits}
    if args.disable or args.enable:
        changes["disabled"] = bool(args.disable)
    if args.expires is not None:
        try:
            changes["expires_at"] = (
                None if args.expires == "never" else parse_when(args.expires, now)
            )
        except ValueError as err:
            raise KeyStoreError(f"--expires: {err}") from None
    if not changes:
        raise KeyStoreError(
            "nothing to change: give --scopes, --models, a limit, --expires, "
            "--disable/--enable or --note"
        )
    record = update_key(path, args.ref, changes, now=now)
    log_action(
        config,
        "update",
        key_id=record.id,
        key_name=record.name,
        detail={"fields": sorted(changes)},
    )
    print_result(
        args, describe(record, now), f"Updated key {record.name!r} (id {record.id})."
    )
    return 0


def _grace(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise KeyStoreError(f"--grace: {err}") from None


def cmd_rotate(args: argparse.Namespace, config: Config) -> int:
    """Give a key a new token, keeping the old one for the grace period."""
    now = utc_now()
    grace = _grace(args.grace)
    rotated = rotate_key(
        existing_store(config),
        make_hasher(config.keys.argon2),
        args.ref,
        grace=grace,
        now=now,
        public_key=read_public_key(args.ollama_public_key),
    )
    record = rotated.record
    log_action(
        config,
        "rotate",
        key_id=record.id,
        key_name=record.name,
        detail={"grace_seconds": grace.total_seconds()},
    )
    if args.json:
        print(json.dumps(rotated.as_dict(now)))
        return 0
    until = format_when(now + grace) if grace else "now"
    print(f"Rotated key {record.name!r} (id {record.id}).")
    if rotated.token is None:
        print(f"The previous public key works until {until}; new: {record.fingerprint}")
        return 0
    print(f"The previous token works until {until}.")
    print("New token (shown once; it cannot be recovered):")
    print(rotated.token)
    return 0


def cmd_passwd(args: argparse.Namespace, config: Config) -> int:
    """Give a password key a new password; the old one works for the grace period."""
    now = utc_now()
    grace = _grace(args.grace)
    path = existing_store(config)
    password = sys.stdin.readline().rstrip("\r\n")
    changed = rotate_key(
        path,
        make_hasher(config.keys.argon2),
        args.ref,
        grace=grace,
        now=now,
        password=password,
    )
    record = changed.record
    log_action(
        config,
        "passwd",
        key_id=record.id,
        key_name=record.name,
        detail={"grace_seconds": grace.total_seconds()},
    )
    until = format_when(now + grace) if grace else None
    print_result(
        args,
        changed.as_dict(now),
        f"Changed the password of key {record.name!r} (id {record.id}).\n"
        + (
            f"The previous password works until {until}."
            if until
            else "The previous password no longer works."
        ),
    )
    return 0


def cmd_revoke(args: argparse.Namespace, config: Config) -> int:
    """Revoke a key by id or name."""
    now = utc_now()
    record, changed = revoke_key(existing_store(config), args.ref, now=now)
    if changed:
        log_action(config, "revoke", key_id=record.id, key_name=record.name)
    if args.json:
        print(json.dumps({**describe(record, now), "changed": changed}))
    elif changed:
        print(f"Revoked key {record.name!r} (id {record.id}).")
    else:
        print(f"Key {record.name!r} (id {record.id}) was already revoked.")
    return 0
