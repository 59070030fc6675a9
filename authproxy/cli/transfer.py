"""``keys import FILE`` and ``keys export FILE``: move a store between backends.

Both speak the key file's format (``keys.store``), so a store moves from the
file backend to Redis with ``export`` on the old settings and ``import`` on
the new ones, and back the same way. Hashes move as they are: no token changes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from authproxy.cli.common import AddOptions, log_action, print_result, store
from authproxy.config.model import Config
from authproxy.errors import KeyStoreError
from authproxy.files import write_file_atomically
from authproxy.keys.store import (
    KeyTable,
    dump_store,
    load_store,
    read_or_empty,
    update_store,
)


def add_transfer_commands(
    keys: argparse.ArgumentParser, add_options: AddOptions
) -> None:
    """Register ``keys import`` and ``keys export`` under the ``keys`` parser."""
    sub = next(a for a in keys._actions if isinstance(a, argparse._SubParsersAction))
    for name, help_text, handler, force in (
        (
            "import",
            "load a key file into the configured store (file or Redis)",
            cmd_import,
            "--replace",
        ),
        (
            "export",
            "write the configured store (file or Redis) to a key file",
            cmd_export,
            "--force",
        ),
    ):
        parser = sub.add_parser(name, help=help_text, description=help_text)
        add_options(parser)
        parser.add_argument(
            "file", metavar="FILE", help="a key file (keys.yaml format)"
        )
        parser.add_argument(
            force,
            action="store_true",
            help="replace the keys already in the store"
            if name == "import"
            else "overwrite FILE if it exists",
        )
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=handler)


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    """Put the keys of FILE in the configured store, in one atomic change."""
    table = load_store(Path(args.file)).table

    def change(current: KeyTable) -> tuple[KeyTable, int]:
        if current.records and not args.replace:
            raise KeyStoreError(
                f"the store already holds {len(current.records)} key(s); "
                "give --replace to replace them with the file's"
            )
        return table, len(current.records)

    replaced = update_store(store(config), change)
    count = len(table.records)
    log_action(config, "import", detail={"keys": count, "replaced": replaced})
    data: dict[str, Any] = {"imported": count, "replaced": replaced}
    print_result(args, data, f"Imported {count} key(s); replaced {replaced}.")
    return 0


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    """Write every key of the configured store, with its hash, to FILE (mode 0600)."""
    target = Path(args.file)
    if target.exists() and not args.force:
        raise KeyStoreError(f"{target} exists; give --force to overwrite it")
    table = read_or_empty(store(config))
    write_file_atomically(target, dump_store(table).encode("utf-8"))
    count = len(table.records)
    log_action(config, "export", detail={"keys": count})
    print_result(args, {"exported": count}, f"Exported {count} key(s) to {target}.")
    return 0
