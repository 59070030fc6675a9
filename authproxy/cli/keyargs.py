"""The ``keys`` commands' arguments: what ``authproxy keys ...`` accepts."""

from __future__ import annotations

import argparse
from typing import Any

from authproxy.cli.common import AddOptions, split_list
from authproxy.cli.keylist import cmd_list
from authproxy.cli.keys import (
    LIMIT_FLAGS,
    cmd_create,
    cmd_passwd,
    cmd_revoke,
    cmd_rotate,
    cmd_show,
    cmd_update,
)
from authproxy.cli.ops import cmd_check_keys
from authproxy.cli.tokens import add_token_commands
from authproxy.keys.record import DEFAULT_SCOPES


def add_keys_commands(commands: Any, add_options: AddOptions) -> None:
    """Register ``keys ...``, ``admin-token`` and ``signing-key rotate``."""
    keys = commands.add_parser("keys", help="manage API keys")
    sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, handler: Any, ref: bool = True) -> Any:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        add_options(parser)
        if ref:
            parser.add_argument("ref", metavar="ID|NAME", help="key id or name")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=handler)
        return parser

    create = command(
        "create", "create a key and print its token once", cmd_create, ref=False
    )
    create.add_argument("name", help="unique key name (also the Basic username)")
    proof = create.add_mutually_exclusive_group()
    proof.add_argument(
        "--password-stdin",
        action="store_true",
        help="read a chosen password from stdin (Basic auth only) instead of "
        "generating a token",
    )
    proof.add_argument(
        "--ollama-public-key",
        metavar="FILE",
        help="an id_ed25519.pub ('-': stdin): the key is proved by the ollama "
        "CLI's OLLAMA_AUTH signatures, with no token at all",
    )
    _policy_options(create, expires_help="RFC 3339 time or a duration (30d, 12h)")
    command("list", "list keys (never secrets or hashes)", cmd_list, ref=False)
    command("show", "show one key", cmd_show)
    update = command(
        "update", "change a key's scopes, models, expiry, state or note", cmd_update
    )
    _policy_options(update, expires_help="RFC 3339 time, a duration, or 'never'")
    state = update.add_mutually_exclusive_group()
    state.add_argument("--disable", action="store_true", help="disable the key")
    state.add_argument("--enable", action="store_true", help="enable the key again")
    rotate = command(
        "rotate", "give a key a new token; the old one works for --grace", cmd_rotate
    )
    _grace_option(rotate, "token")
    rotate.add_argument(
        "--ollama-public-key",
        metavar="FILE",
        help="an ollama key's new id_ed25519.pub ('-': stdin)",
    )
    passwd = command(
        "passwd",
        "give a password key a new password; the old one works for --grace",
        cmd_passwd,
    )
    passwd.add_argument(
        "--password-stdin",
        action="store_true",
        required=True,
        help="read the new password from the first line of stdin",
    )
    _grace_option(passwd, "password")
    command("revoke", "revoke a key for good (its JWTs die too)", cmd_revoke)
    check = command(
        "check",
        "check that the store loads (after a hand edit); --rewrite upgrades it",
        cmd_check_keys,
        ref=False,
    )
    check.add_argument(
        "--rewrite",
        action="store_true",
        help="rewrite a store that loads in the current format, with its "
        "completeness mark",
    )
    add_token_commands(commands, command, add_options)


def _grace_option(parser: argparse.ArgumentParser, secret: str) -> None:
    parser.add_argument(
        "--grace",
        default="0",
        metavar="DURATION",
        help=f"how long the previous {secret} keeps working (default 0: not at all)",
    )


def _policy_options(parser: argparse.ArgumentParser, *, expires_help: str) -> None:
    parser.add_argument(
        "--scopes",
        type=split_list,
        metavar="LIST",
        help=f"comma list of scopes (default for new keys: {','.join(DEFAULT_SCOPES)})",
    )
    parser.add_argument(
        "--models",
        type=split_list,
        metavar="LIST",
        help="comma list of allowed model names or globs (empty: all models)",
    )
    parser.add_argument("--expires", metavar="WHEN", help=expires_help)
    for flag, name in LIMIT_FLAGS:
        parser.add_argument(
            flag, type=int, metavar="N", dest=name, help=f"limit {name} (0: none)"
        )
    parser.add_argument("--note", help="free text, for people")
