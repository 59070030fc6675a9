"""metering.report: usage aggregated from the audit log by key, model or day."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from authproxy.cli.main import main
from authproxy.config.model import AuditConfig
from authproxy.metering.audit import AuditWriter

RECORDS: list[dict[str, Any]] = [
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


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "usage.jsonl"
    writer = AuditWriter(AuditConfig(file=str(path)))
    writer.open()
    for record in RECORDS:
        writer.append(record)
    writer.close()
    return path


def usage(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["usage", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_totals_as_json(capsys, log_file: Path) -> None:
    """With no grouping, one row sums everything; denied requests are counted apart."""
    code, out, _ = usage(capsys, "--audit-log", str(log_file), "--json")
    assert code == 0
    assert json.loads(out) == [
        {
            "requests": 3,
            "denied": 1,
            "prompt_tokens": 34,
            "completion_tokens": 39,
            "total_tokens": 73,
            "estimated_share": round(8 / 73, 4),
        }
    ]


def test_by_key_and_model(capsys, log_file: Path) -> None:
    """--by key --by model groups on both dimensions."""
    code, out, _ = usage(
        capsys, "--audit-log", str(log_file), "--by", "key,model", "--json"
    )
    assert code == 0
    rows = {
        (r["key"], r["model"]): (r["requests"], r["total_tokens"])
        for r in json.loads(out)
    }
    assert rows == {
        ("alice", "llama3.2"): (1, 15),
        ("alice", "qwen3"): (1, 8),
        ("bob", "llama3.2"): (1, 50),
        ("k9", "-"): (0, 0),
    }


def test_by_day_with_a_window(capsys, log_file: Path) -> None:
    """--since/--until keep records with since <= ts < until."""
    code, out, _ = usage(
        capsys,
        "--audit-log",
        str(log_file),
        "--by",
        "day",
        "--since",
        "2026-11-20T10:30:00Z",
        "--until",
        "2026-11-21T09:15:00Z",
        "--json",
    )
    assert code == 0
    assert [(r["day"], r["requests"], r["total_tokens"]) for r in json.loads(out)] == [
        ("2026-11-20", 1, 8),
        ("2026-11-21", 1, 50),
    ]


def test_relative_since(capsys, log_file: Path) -> None:
    """A duration means that long before now (nothing in the last hour here)."""
    code, out, _ = usage(
        capsys, "--audit-log", str(log_file), "--since", "1h", "--json"
    )
    assert (code, json.loads(out)) == (0, [])
