"""Audit logs in tests: read records, wait for them, write sealed ones directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from authproxy.config.model import AuditConfig
from authproxy.metering.audit import AuditWriter
from authproxy.metering.chain import ChainState, seal
from tests.support.polling import poll_until


def read_audit(path: Path) -> list[dict[str, Any]]:
    """Return the audit records written so far.

    A running server may be part-way through a write while this reads, so a
    last line without its newline is not yet a record and is left out.
    """
    if not path.exists():
        return []
    whole, _, _ = path.read_bytes().rpartition(b"\n")
    return [json.loads(line) for line in whole.splitlines() if line]


async def wait_audit(path: Path, count: int) -> list[dict[str, Any]]:
    """Wait (up to 2 s) until ``count`` audit records exist; return them."""
    await poll_until(lambda: len(read_audit(path)) >= count)
    return read_audit(path)


def auth_denials(path: Path) -> list[dict[str, Any]]:
    """Return the admin trail's failed-authentication records."""
    return [r for r in read_audit(path) if r["action"] == "auth"]


def writer_for(path: Path, **settings: Any) -> AuditWriter:
    """Return an open audit writer on ``path`` with the given audit settings."""
    writer = AuditWriter(AuditConfig(file=str(path), **settings))
    writer.open()
    return writer


def write_n(writer: AuditWriter, n: int, start: int = 0) -> None:
    """Append ``n`` small records numbered from ``start``."""
    for i in range(start, start + n):
        writer.append({"n": i, "path": "/api/chat", "note": "ü<>&"})


def write_records(path: Path, records: list[dict[str, Any]], **settings: Any) -> None:
    """Write ``records`` as a sealed audit log, as the proxy would."""
    writer = writer_for(path, **settings)
    for record in records:
        writer.append(record)
    writer.close()


def sealed_lines(n: int) -> list[bytes]:
    """Return ``n`` chained lines (each ending in a newline), as the writer seals."""
    lines, state = [], ChainState()
    for i in range(n):
        line, state = seal({"n": i, "path": "/api/chat" + "x" * 100}, state)
        lines.append(line)
    return lines


# Records for usage reports: two keys, two models, an estimate and a denial.
USAGE_RECORDS: Final[list[dict[str, Any]]] = [
    {
        "ts": "2026-11-20T10:00:00Z",
        "key_id": "k1",
        "key_name": "alice",
        "model": "llama3.2",
        "outcome": "completed",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "usage_exact": True,
    },
    {
        "ts": "2026-11-20T11:00:00Z",
        "key_id": "k1",
        "key_name": "alice",
        "model": "qwen3",
        "outcome": "stream_error",
        "prompt_tokens": 4,
        "completion_tokens": 4,
        "usage_exact": False,
    },
    {
        "ts": "2026-11-21T09:00:00Z",
        "key_id": "k2",
        "key_name": "bob",
        "model": "llama3.2",
        "outcome": "completed",
        "prompt_tokens": 20,
        "completion_tokens": 30,
        "usage_exact": True,
    },
    {
        "ts": "2026-11-21T09:30:00Z",
        "key_id": "k9",
        "key_name": None,
        "model": None,
        "outcome": "denied",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "usage_exact": True,
    },
]
