"""The admin trail: one sealed record per key-management action, API or CLI.

The CLI and a running server both append to ``audit.admin_file``. Each append
takes the file's lock and reads the chain tail first, so two writers never fork
the chain (admin actions are rare, so the extra read costs nothing).
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any

import structlog

from authproxy.config.replica import replica_name
from authproxy.files import store_lock
from authproxy.metering.chain import ChainState, seal, tail_state
from authproxy.metering.logfiles import open_private
from authproxy.times import format_timestamp, utc_now

log = structlog.stdlib.get_logger(__name__)


def record_action(
    path: Path,
    *,
    actor: str,
    action: str,
    source: str,
    result: str = "ok",
    key_id: str | None = None,
    key_name: str | None = None,
    detail: dict[str, Any] | None = None,
    request_id: str | None = None,
    client: str | None = None,
    replica: str | None = None,
) -> bool:
    """Append one admin record; never raises (a failure is logged and reported).

    Args:
        path: the admin trail file.
        actor: who acted (a key name, ``jwt:<actor>`` or ``cli:<user>``).
        action: create, update, rotate, revoke, token, admin_token,
            signing_key_rotated, or auth (a failed admin authentication).
        source: ``api``, ``console`` or ``cli``.
        result: ``ok``, ``denied`` or ``error``.
        key_id: the key acted on.
        key_name: its name.
        detail: non-secret particulars (changed fields, grace, ttl, reason).
        request_id: the API request id.
        client: the API client address.
        replica: ``server.replica``; ``None``: the host name.

    Returns:
        Whether the record was written.
    """
    record = {
        "ts": format_timestamp(utc_now()),
        "type": "admin",
        "source": source,
        "actor": actor,
        "action": action,
        "result": result,
        "key_id": key_id,
        "key_name": key_name,
        "detail": detail or {},
        "request_id": request_id,
        "client": client,
        "replica": replica_name(replica),
    }
    try:
        with store_lock(path):
            state = tail_state(path) or ChainState()
            line, _ = seal(record, state)
            fd = open_private(path)
            try:
                # A line torn by a full disk is ended first, so it stays apart.
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line
                if os.write(fd, line) != len(line):
                    raise OSError("short write (a full disk?)")
            finally:
                os.close(fd)
    except OSError as err:
        log.error("admin_log_failed", path=str(path), error=err.strerror or str(err))
        return False
    except Exception as err:  # noqa: BLE001 - an audit failure must not break admin
        log.error("admin_log_failed", path=str(path), error=type(err).__name__)
        return False
    return True


def cli_actor() -> str:
    """Return the actor name for CLI actions: the operating-system user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid{os.getuid()}"
