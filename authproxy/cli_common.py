"""Helpers the command modules share: option types, output, the admin trail."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from authproxy.adminlog import cli_actor, record_action
from authproxy.config import Config

AddOptions = Callable[[argparse.ArgumentParser], None]


def split_list(value: str) -> list[str]:
    """Parse a comma-separated option value."""
    return [v.strip() for v in value.split(",") if v.strip()]


def store(config: Config) -> Path:
    """Return the key store path."""
    return Path(config.keys.file)


def log_action(config: Config, action: str, **fields: Any) -> None:
    """Record a CLI admin action in the admin trail."""
    record_action(
        Path(config.audit.admin_file),
        actor=cli_actor(),
        action=action,
        source="cli",
        **fields,
    )


def print_result(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    """Print JSON with ``--json``, else the human text."""
    print(json.dumps(data) if args.json else text)
