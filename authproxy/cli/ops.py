"""Operations commands: ``healthcheck``, ``check-config`` and ``keys check``."""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from authproxy.cli.common import existing_store, print_result, printable
from authproxy.config.load import ENV_PREFIX, as_dict, config_keys
from authproxy.config.model import Config
from authproxy.keys.store import LEGACY_VERSION, KeyTable, load_store, update_store

AddOptions = Callable[[argparse.ArgumentParser], None]
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def add_ops_commands(
    commands: Any, add_options: AddOptions, add_serve_options: AddOptions
) -> None:
    """Register ``healthcheck`` and ``check-config`` (which takes serve's flags)."""
    health = commands.add_parser(
        "healthcheck",
        help="exit 0 if the local proxy answers /healthz (container HEALTHCHECK)",
        description="Probe /healthz of the proxy described by the config; "
        "needs no curl in the image.",
    )
    add_options(health)
    health.add_argument(
        "--url",
        help="URL to probe; a base URL such as http://host:port gets /healthz "
        "(default: /healthz on listen.host:listen.port)",
    )
    health.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait (default 3)"
    )
    health.set_defaults(handler=cmd_healthcheck)

    check = commands.add_parser(
        "check-config",
        help="validate the config and print the effective settings",
        description="Validate file, AUTHPROXY_* variables and the flags serve "
        "takes; print the effective configuration as YAML, secrets masked. Exit 2 "
        "on errors.",
    )
    add_options(check)
    add_serve_options(check)
    check.set_defaults(handler=cmd_check_config)


def health_url(config: Config) -> str:
    """Return the local /healthz URL for the configured listener."""
    host = _WILDCARDS.get(config.listen.host, config.listen.host)
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.tls.cert else "http"
    return f"{scheme}://{host}:{config.listen.port}/healthz"


def probe_url(url: str) -> str:
    """Return ``url``, with ``/healthz`` added to a base URL (no path, or ``.../``).

    ``http://host:11435`` and ``http://host:11435/`` probe ``/healthz``; under a
    path prefix, ``http://host/ollama/`` probes ``/ollama/healthz``. Any other
    URL, ``http://host:11435/readyz`` say, is probed as given.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.path and not parts.path.endswith("/"):
        return url
    path = (parts.path or "/") + "healthz"
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _loopback_context() -> ssl.SSLContext:
    """Return the client context for probing our own listener over loopback."""
    ctx = ssl.create_default_context()
    # The certificate names the public host, not the loopback address probed
    # here, and the probe sends no secret: verifying it would prove nothing.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _handshake(url: str, ctx: ssl.SSLContext, timeout: float) -> None:
    """Complete a TLS 1.3 handshake with the listener at ``url``.

    With ``tls.client_ca`` even /healthz needs a client certificate, which the
    probe does not have. In TLS 1.3 the client's side of the handshake is done
    before the server checks that certificate, so a completed handshake shows
    the server accepting connections and answering them with its certificate.

    Raises:
        OSError: no connection, or the handshake failed.
    """
    parts = urllib.parse.urlsplit(url)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    address = (parts.hostname or "", parts.port or 443)
    with (
        socket.create_connection(address, timeout=timeout) as sock,
        ctx.wrap_socket(sock),
    ):
        pass


def cmd_healthcheck(args: argparse.Namespace, config: Config) -> int:
    """Probe /healthz; exit 0 when it answers 200."""
    url = probe_url(args.url) if args.url else health_url(config)
    # Only the probe of the configured listener skips verification; a --url
    # is verified like any other HTTPS request.
    context = _loopback_context() if config.tls.cert and not args.url else None
    try:
        if context is not None and config.tls.client_ca:
            _handshake(url, context, args.timeout)
            print(
                f"healthy: {printable(url)} "
                "(TLS handshake only: client certificates required)"
            )
            return 0
        with urllib.request.urlopen(  # noqa: S310
            url, timeout=args.timeout, context=context
        ) as reply:
            status = reply.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        # "connection refused", not "[Errno 111] Connection refused".
        words = getattr(reason, "strerror", None) or str(reason)
        print(f"unhealthy: {printable(url)}: {printable(words)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {printable(url)}: HTTP {status}", file=sys.stderr)
        return 1
    print(f"healthy: {printable(url)}")
    return 0


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    """Print the effective configuration (validation already happened).

    A comment on top names where the settings came from, later ones winning.
    """
    sources = ["built-in defaults"]
    if args.config:
        sources.append(f"file {Path(args.config).resolve()}")
    names = (ENV_PREFIX + key.upper().replace(".", "_") for key in config_keys())
    variables = sorted(name for name in names if name in os.environ)
    if variables:
        sources.append("environment variables: " + ", ".join(variables))
    flags: list[str] = getattr(args, "flag_keys", [])
    if flags:
        sources.append("command-line flags: " + ", ".join(flags))
    header = "# Effective configuration, secrets masked. From, later wins:\n"
    header += "".join(f"#   {printable(source)}\n" for source in sources)
    print(header + yaml.safe_dump(as_dict(config), sort_keys=False), end="")
    return 0


def cmd_check_keys(args: argparse.Namespace, config: Config) -> int:
    """Load the store as the server would; with ``--rewrite``, rewrite it."""
    path = existing_store(config)
    if not isinstance(path, Path):  # Redis checks each record as it reads it
        count = len(path.read().records)
        print_result(args, {"backend": "redis", "keys": count}, f"ok: {count} key(s)")
        return 0
    loaded = load_store(path)
    keys = len(loaded.table.records)
    if args.rewrite:
        # Under the store's lock, from a fresh read: a concurrent change wins.
        def rewrite(table: KeyTable) -> tuple[KeyTable, int]:
            return KeyTable(table.records), len(table.records)

        keys = update_store(path, rewrite)
    data = {
        "file": str(path),
        "keys": keys,
        "version": loaded.version,
        "rewritten": bool(args.rewrite),
    }
    if args.rewrite:
        text = f"ok: {path}: {keys} key(s); rewritten in the current format"
    elif loaded.version == LEGACY_VERSION:
        text = (
            f"ok: {path}: {keys} key(s), format version 1 without a completeness "
            "mark; --rewrite upgrades it"
        )
    else:
        text = f"ok: {path}: {keys} key(s), complete"
    print_result(args, data, text)
    return 0
