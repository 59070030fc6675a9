"""metering.report: usage aggregated from the audit log by key, model or day."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.admin import Stack
from tests.support.audit import wait_audit, write_records
from tests.support.cli import run
from tests.support.payloads import CHAT


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


def test_by_reason_counts_denials_only(capsys, tmp_path: Path) -> None:
    """--by reason: each refusal reason; admitted requests and failures count to -."""
    log_file = tmp_path / "usage.jsonl"
    records = [
        {"ts": "2026-11-21T10:00:00Z", "outcome": "denied", "reason": "bad_key"},
        {"ts": "2026-11-21T10:01:00Z", "outcome": "denied", "reason": "bad_key"},
        {"ts": "2026-11-21T10:02:00Z", "outcome": "denied", "reason": "rpm"},
        {"ts": "2026-11-21T10:03:00Z", "outcome": "upstream_error", "reason": "x"},
    ]
    write_records(log_file, records)
    code, out, _ = run(
        capsys, "usage", "--audit-log", str(log_file), "--by", "reason", "--json"
    )
    assert code == 0
    rows = {r["reason"]: (r["requests"], r["denied"]) for r in json.loads(out)}
    assert rows == {"-": (1, 0), "bad_key": (0, 2), "rpm": (0, 1)}


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


def _usage(capsys, path: Path, *args: str) -> list[dict[str, Any]]:
    code, out, err = run(capsys, "usage", "--audit-log", str(path), *args, "--json")
    assert (code, err) == (0, "")
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_one_key_is_one_row_under_its_id(capsys, tmp_path: Path) -> None:
    """A key's denied records (id only) and admitted ones (id and name) are one row."""
    path = tmp_path / "usage.jsonl"
    write_records(
        path,
        [
            {"key_id": "k1", "key_name": None, "outcome": "denied"},
            {"key_id": "k1", "key_name": "alice", "outcome": "completed"},
            {"key_id": "k1", "key_name": None, "outcome": "denied"},
            {"key_id": None, "key_name": None, "outcome": "denied"},
        ],
    )
    assert _usage(capsys, path, "--by", "key") == [
        {"key_id": None, "key": None, **_counts(denied=1)},
        {"key_id": "k1", "key": "alice", **_counts(requests=1, denied=2)},
    ]


def test_an_admin_jwt_actor_is_not_a_key(capsys, tmp_path: Path) -> None:
    """Admin-JWT records count under key id admin; their actor is never a key name."""
    path = tmp_path / "usage.jsonl"
    write_records(
        path,
        [
            {"key_id": "admin", "key_name": "carol", "scheme": "jwt"},
            {"key_id": "admin", "key_name": "dave", "scheme": "jwt"},
            {"key_id": "k1", "key_name": "alice", "scheme": "jwt"},
        ],
    )
    rows = _usage(capsys, path, "--by", "key")
    assert [(r["key_id"], r["key"], r["requests"]) for r in rows] == [
        ("admin", None, 2),
        ("k1", "alice", 1),
    ]


def test_names_come_from_the_key_store(
    capsys, tmp_path: Path, make_key, config_file: Path
) -> None:
    """A key the records never named is shown with its name from the key store."""
    bob = make_key("bob").record
    path = tmp_path / "usage.jsonl"
    write_records(path, [{"key_id": bob.id, "key_name": None, "outcome": "denied"}])
    rows = _usage(capsys, path, "--by", "key", "--config", str(config_file))
    assert [(r["key_id"], r["key"], r["denied"]) for r in rows] == [(bob.id, "bob", 1)]


def test_models_are_counted_as_ollama_names_them(capsys, tmp_path: Path) -> None:
    """Spellings of one model share a row; a name Ollama would refuse stays as is."""
    spellings = [
        "llama3.2",
        "llama3.2:latest",
        " LLAMA3.2 ",
        "library/llama3.2",
        "registry.ollama.ai/library/Llama3.2:latest",
        "gpt-oss:120b-cloud",
        "gpt-oss:120b:CLOUD",
        "not a model",
    ]
    path = tmp_path / "usage.jsonl"
    write_records(path, [{"model": m, "prompt_tokens": 1} for m in spellings])
    rows = _usage(capsys, path, "--by", "model")
    assert [(r["model"], r["requests"]) for r in rows] == [
        ("gpt-oss:120b-cloud", 2),
        ("llama3.2:latest", 5),
        ("not a model", 1),
    ]


def _counts(requests: int = 0, denied: int = 0) -> dict[str, int | float]:
    return {
        "requests": requests,
        "denied": denied,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "estimated_share": 0.0,
    }


async def test_the_admin_api_groups_the_same_way(
    stack: Stack, key, audit_path: Path
) -> None:
    """GET /admin/usage?by=key gives one row per key id, named from the key store."""
    alice = key.record
    assert await stack.call(str(key.token), "POST", "/api/chat", CHAT) == 200
    assert await stack.call(f"ap_{alice.id}_{'x' * 43}") == 401
    await wait_audit(audit_path, 2)
    status, data = await stack.api("GET", "/admin/usage?by=key")
    assert status == 200
    assert [
        (r["key_id"], r["key"], r["requests"], r["denied"]) for r in data["rows"]
    ] == [(alice.id, "alice", 1, 1)]


def test_a_broken_key_store_leaves_the_names_of_the_records(
    capsys, tmp_path: Path, keys_path: Path, config_file: Path
) -> None:
    """A key store that cannot be read does not stop the report: records name keys."""
    keys_path.parent.mkdir(parents=True)
    keys_path.write_text("keys: [\n")
    path = tmp_path / "usage.jsonl"
    write_records(path, [{"key_id": "k1", "key_name": "alice"}])
    rows = _usage(capsys, path, "--by", "key", "--config", str(config_file))
    assert [(r["key_id"], r["key"]) for r in rows] == [("k1", "alice")]
