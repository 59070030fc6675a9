"""JWT commands: ``keys token``, ``admin-token`` and ``signing-key rotate``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from authproxy.auth.minting import mint_admin_token, mint_key_token
from authproxy.cli.common import (
    AddOptions,
    load_table,
    log_action,
    print_result,
    split_list,
)
from authproxy.config.model import Config
from authproxy.errors import KeyStoreError
from authproxy.keys.backend import key_backend
from authproxy.keys.lifecycle import find_key
from authproxy.metering.trail import cli_actor
from authproxy.times import parse_duration, utc_now


def add_token_commands(
    commands: Any, command: Callable[..., Any], add_options: AddOptions
) -> None:
    """Register ``keys token`` (via ``command``), ``admin-token``, ``signing-key``."""
    token = command("token", "mint a short-lived JWT for a key", cmd_token)
    token.add_argument(
        "--ttl", default="15m", metavar="DURATION", help="lifetime (default 15m)"
    )
    token.add_argument(
        "--scopes", type=split_list, help="comma list, a subset of the key's"
    )
    token.add_argument(
        "--models", type=split_list, help="comma list narrowing the key's models"
    )

    admin = commands.add_parser(
        "admin-token",
        help="mint an admin JWT for the admin API",
        description="Mint a short-lived JWT carrying only the admin scope.",
    )
    add_options(admin)
    admin.add_argument(
        "--ttl", default="15m", metavar="DURATION", help="lifetime (default 15m)"
    )
    admin.add_argument("--actor", help="who the token is for (default: the OS user)")
    admin.add_argument("--json", action="store_true", help="print JSON")
    admin.set_defaults(handler=cmd_admin_token)

    signing = commands.add_parser("signing-key", help="manage the JWT signing keys")
    signing_sub = signing.add_subparsers(
        dest="signing_command", required=True, metavar="COMMAND"
    )
    rotate_signing = signing_sub.add_parser(
        "rotate",
        help="start signing with a new key; older tokens stay valid",
        description="Put a new JWT signing key first. Tokens signed by the previous "
        "keys stay valid until they expire.",
    )
    add_options(rotate_signing)
    rotate_signing.add_argument("--json", action="store_true", help="print JSON")
    rotate_signing.set_defaults(handler=cmd_rotate_signing_key)


def cmd_token(args: argparse.Namespace, config: Config) -> int:
    """Mint a short-lived JWT for a key."""
    now = utc_now()
    record = find_key(load_table(config), args.ref)
    minted = mint_key_token(
        key_backend(config).load_signing(),
        record,
        ttl=_ttl(args.ttl),
        max_ttl=timedelta(seconds=config.jwt.max_ttl),
        now=now,
        scopes=args.scopes,
        models=args.models,
    )
    log_action(
        config,
        "token",
        key_id=record.id,
        key_name=record.name,
        detail={
            "ttl": args.ttl,
            "scopes": minted["scopes"],
            "models": minted["models"],
        },
    )
    print_result(args, minted, minted["token"])
    return 0


def cmd_admin_token(args: argparse.Namespace, config: Config) -> int:
    """Mint an admin JWT."""
    actor = args.actor or cli_actor().removeprefix("cli:")
    minted = mint_admin_token(
        key_backend(config).load_signing(),
        actor=actor,
        ttl=_ttl(args.ttl),
        max_ttl=timedelta(seconds=config.jwt.max_ttl),
        now=utc_now(),
    )
    log_action(config, "admin_token", detail={"ttl": args.ttl, "for": actor})
    print_result(args, minted, minted["token"])
    return 0


def cmd_rotate_signing_key(args: argparse.Namespace, config: Config) -> int:
    """Start signing JWTs with a new key."""
    keys = key_backend(config).rotate_signing(utc_now())
    log_action(config, "signing_key_rotated", detail={"kid": keys.current.kid})
    data = {"kid": keys.current.kid, "verifying_kids": [k.kid for k in keys.keys]}
    print_result(
        args,
        data,
        f"Now signing with key {keys.current.kid}; "
        f"{len(keys.keys) - 1} previous key(s) still verify.",
    )
    return 0


def _ttl(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise KeyStoreError(f"--ttl: {err}") from None
