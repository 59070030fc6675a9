"""metering.report: usage aggregated from the audit log by key, model or day."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run


def test_totals_as_json(capsys, log_file: Path) -> None:
    """With no grouping, one row sums everything; denied requests are counted apart."""
    code, out, _ = run(capsys, "usage", "--audit-log", str(log_file), "--json")
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
    code, out, _ = run(
        capsys, "usage", "--audit-log", str(log_file), "--by", "key,model", "--json"
    )
    assert code == 0
    rows = {
        (r["key_id"], r["key"], r["model"]): (r["requests"], r["total_tokens"])
        for r in json.loads(out)
    }
    assert rows == {
        ("k1", "alice", "llama3.2:latest"): (1, 15),
        ("k1", "alice", "qwen3:latest"): (1, 8),
        ("k2", "bob", "llama3.2:latest"): (1, 50),
        ("k9", None, "-"): (0, 0),
    }


def test_by_day_with_a_window(capsys, log_file: Path) -> None:
    """--since/--until keep records with since <= ts < until."""
    code, out, _ = run(
        capsys,
        "usage",
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
    code, out, _ = run(
        capsys, "usage", "--audit-log", str(log_file), "--since", "1h", "--json"
    )
    assert (code, json.loads(out)) == (0, [])
