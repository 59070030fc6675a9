"""Operations commands: ``healthcheck`` (for container probes) and ``check-config``."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import yaml

from authproxy.config import Config, as_dict

AddOptions = Callable[[argparse.ArgumentParser], None]
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104


def add_ops_commands(commands: Any, add_options: AddOptions) -> None:
    """Register ``healthcheck`` and ``check-config``."""
    health = commands.add_parser(
        "healthcheck",
        help="exit 0 if the local proxy answers /healthz (container HEALTHCHECK)",
        description="Probe /healthz of the proxy described by the config; "
        "needs no curl in the image.",
    )
    add_options(health)
    health.add_argument(
        "--url", help="URL to probe (default: /healthz on listen.host:listen.port)"
    )
    health.add_argument(
        "--timeout", type=float, default=3.0, help="seconds to wait (default 3)"
    )
    health.set_defaults(handler=cmd_healthcheck)

    check = commands.add_parser(
        "check-config",
        help="validate the config and print the effective settings",
        description="Validate file, AUTHPROXY_* variables and flags; print the "
        "effective configuration as YAML, secrets masked. Exit 2 on errors.",
    )
    add_options(check)
    check.set_defaults(handler=cmd_check_config)


def health_url(config: Config) -> str:
    """Return the local /healthz URL for the configured listener."""
    host = _WILDCARDS.get(config.listen.host, config.listen.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.listen.port}/healthz"


def cmd_healthcheck(args: argparse.Namespace, config: Config) -> int:
    """Probe /healthz; exit 0 when it answers 200."""
    url = args.url or health_url(config)
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as reply:  # noqa: S310
            status = reply.status
    except urllib.error.HTTPError as err:
        status = err.code
    except (urllib.error.URLError, OSError) as err:
        print(f"unhealthy: {url}: {getattr(err, 'reason', err)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url}: HTTP {status}", file=sys.stderr)
        return 1
    print(f"healthy: {url}")
    return 0


def cmd_check_config(args: argparse.Namespace, config: Config) -> int:
    """Print the effective configuration (validation already happened)."""
    print(yaml.safe_dump(as_dict(config), sort_keys=False), end="")
    return 0
