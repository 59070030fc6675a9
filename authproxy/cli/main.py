"""The ``authproxy`` command line: ``serve`` and ``keys``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from authproxy import __version__
from authproxy.cli.audit import add_audit_commands
from authproxy.cli.common import printable
from authproxy.cli.keyargs import add_keys_commands
from authproxy.cli.ops import add_ops_commands
from authproxy.cli.transfer import add_transfer_commands
from authproxy.config.load import CONFIG_ENV, load_config
from authproxy.config.model import Config
from authproxy.errors import ConfigError, KeyStoreError

Command = Callable[[argparse.Namespace, Config], int]


def _listen(value: str) -> dict[str, Any]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. 0.0.0.0:11434")
    return {"listen.host": host.strip("[]") or "0.0.0.0", "listen.port": int(port)}  # noqa: S104


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and ``--keys``, which every command accepts."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get(CONFIG_ENV),
        help=f"YAML config file (default: ${CONFIG_ENV}, else built-in defaults)",
    )
    parser.add_argument(
        "--keys",
        metavar="FILE",
        dest="keys_file",
        help="key store file (config keys.file; default keys/keys.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for all commands."""
    parser = argparse.ArgumentParser(
        prog="authproxy",
        description="Authenticating reverse proxy for Ollama.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the proxy",
        description="Run the proxy. With no key store yet, creates one with a "
        "first key and prints its token once.",
    )
    add_config_options(serve)
    add_serve_options(serve)
    serve.set_defaults(handler=_serve)

    add_keys_commands(commands, add_config_options)
    add_transfer_commands(commands.choices["keys"], add_config_options)
    add_ops_commands(commands, add_config_options, add_serve_options)
    add_audit_commands(commands, add_config_options)
    return parser


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``serve`` that override settings (``check-config`` too)."""
    parser.add_argument(
        "--listen", type=_listen, metavar="HOST:PORT", help="listen address"
    )
    parser.add_argument("--upstream", metavar="URL", help="Ollama URL (upstream.url)")
    parser.add_argument(
        "--admin-listen",
        metavar="HOST:PORT",
        help="admin API listener, '' to disable (admin.listen)",
    )
    parser.add_argument(
        "--audit-log",
        metavar="FILE",
        help="audit log file, '-' for stdout (audit.file)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate chain; serve HTTPS (tls.cert)",
    )
    parser.add_argument(
        "--tls-key", metavar="FILE", help="PEM private key of --tls-cert (tls.key)"
    )
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="log.format"
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="log.level"
    )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Map command-line flags to dotted config keys."""
    result: dict[str, Any] = {}
    if getattr(args, "listen", None):
        result.update(args.listen)
    for flag, key in (
        ("upstream", "upstream.url"),
        ("audit_log", "audit.file"),
        ("admin_listen", "admin.listen"),
        ("keys_file", "keys.file"),
        ("log_format", "log.format"),
        ("log_level", "log.level"),
        ("tls_cert", "tls.cert"),
        ("tls_key", "tls.key"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            result[key] = value
    return result


def _serve(args: argparse.Namespace, config: Config) -> int:
    from authproxy.server.serve import serve  # noqa: PLC0415 - keeps `keys` start-up light

    return serve(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = overrides_from(args)
    args.flag_keys = list(overrides)  # check-config names them
    try:
        config = load_config(args.config, overrides, os.environ)
    except ConfigError as err:
        print(f"authproxy: config error: {printable(err)}", file=sys.stderr)
        return 2
    handler: Command = args.handler
    try:
        return handler(args, config)
    except ConfigError as err:
        print(f"authproxy: {printable(err)}", file=sys.stderr)
        return 2
    except KeyStoreError as err:
        print(f"authproxy: {printable(err)}", file=sys.stderr)
        return 1
