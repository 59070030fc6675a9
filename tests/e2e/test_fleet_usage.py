"""Usage across replicas: fleet counters in Redis equal the sum of the audit files.

Two real proxies named ``a`` and ``b``, each with its own audit file and admin
API, share one real ``redis-server``. ``GET /admin/usage`` on either answers
for both; ``authproxy usage`` and ``audit verify`` (real subprocesses) read both
replicas' files.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.support.admin import Stack
from tests.support.audit import read_audit
from tests.support.cli import run_process
from tests.support.harness import MakeKey, StartReplica, nested
from tests.support.payloads import CHAT, EMBED
from tests.support.polling import poll_until

REPLICAS = ("a", "b")
GROUPINGS: Final[tuple[list[str], ...]] = (
    ["key", "model"],
    ["key"],
    ["model", "day"],
    ["replica"],
    [],
)


def _settings(overrides: dict[str, Any], tmp_path: Path, name: str) -> dict[str, Any]:
    return {
        **overrides,
        "server.replica": name,
        "audit.file": str(tmp_path / name / "usage.jsonl"),
        "audit.admin_file": str(tmp_path / name / "admin.jsonl"),
    }


@pytest.fixture
async def fleet(
    start_replica: StartReplica,
    redis_overrides: dict[str, Any],
    make_redis_key: MakeKey,
    tmp_path: Path,
) -> dict[str, Stack]:
    """Replicas a and b, each with its own audit file, on one Redis."""
    ops = make_redis_key("ops", scopes=["admin"])
    assert ops.token is not None
    return {
        name: await start_replica(_settings(redis_overrides, tmp_path, name), ops.token)
        for name in REPLICAS
    }


def _audit_file(tmp_path: Path, name: str) -> Path:
    return tmp_path / name / "usage.jsonl"


async def _traffic(fleet: dict[str, Stack], make_redis_key: MakeKey) -> int:
    """Send admitted and denied requests through both replicas; return how many."""
    alice = make_redis_key("alice").token
    reader = make_redis_key("reader", scopes=["models:read"]).token
    assert alice is not None
    assert reader is not None
    a, b = fleet["a"], fleet["b"]
    # Each replica follows the table in Redis on its own (within a second when
    # idle, later on a loaded machine): wait until both hold the new keys, as
    # their admin API shows, so no request below meets a table without them.
    for stack in (a, b):
        holds = functools.partial(_holds, stack, {"alice", "reader"})
        assert await poll_until(holds, within=10.0)
    first = [await a.call(alice), await b.call(alice)]
    sent = [
        await a.call(alice, "POST", "/api/chat", CHAT),
        await a.call(alice, "POST", "/api/chat", {**CHAT, "model": "LLAMA3.2:latest"}),
        await b.call(alice, "POST", "/api/chat", CHAT),
        await b.call(alice, "POST", "/api/embed", EMBED),
        await a.call(reader, "POST", "/api/chat", CHAT),  # denied: scope
        await b.call(alice + "x"),  # denied: a wrong secret for alice's id
        await b.call(reader),
    ]
    assert (first, sent) == ([200, 200], [200, 200, 200, 200, 403, 401, 200])
    return len(first) + len(sent)


async def _holds(stack: Stack, names: set[str]) -> bool:
    """Tell whether the replica's key table holds keys of all these names."""
    status, data = await stack.api("GET", "/admin/keys")
    assert status == 200
    return names <= {key["name"] for key in data["keys"]}


async def _fleet_equals(stack: Stack, query: str, rows: list[Any]) -> bool:
    """Tell whether the replica's fleet report has exactly these rows."""
    status, data = await stack.api("GET", f"/admin/usage?{query}")
    assert (status, data["source"]) == (200, "redis")
    return bool(data["rows"] == rows)


async def _cli(
    tmp_path: Path, overrides: dict[str, Any], *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``authproxy`` in a child process with the fleet's Redis settings."""
    config = tmp_path / "cli.yaml"
    config.write_text(yaml.safe_dump(nested(overrides)), encoding="utf-8")
    return await asyncio.to_thread(
        run_process, tmp_path, *args, "--config", str(config)
    )


async def test_admin_usage_on_either_replica_is_the_sum_of_both_files(
    fleet: dict[str, Stack],
    make_redis_key: MakeKey,
    redis_overrides: dict[str, Any],
    tmp_path: Path,
) -> None:
    """GET /admin/usage on a or b equals `authproxy usage` over both audit files."""
    sent = await _traffic(fleet, make_redis_key)
    files = [_audit_file(tmp_path, name) for name in REPLICAS]

    def recorded() -> bool:
        return sum(len(read_audit(f)) for f in files) == sent

    assert await poll_until(recorded)
    for name, path in zip(REPLICAS, files, strict=True):
        records = read_audit(path)
        assert records, name  # both replicas served some
        assert {r["replica"] for r in records} == {name}
    logs = [arg for f in files for arg in ("--audit-log", str(f))]
    for by in GROUPINGS:
        flags = [arg for d in by for arg in ("--by", d)]
        done = await _cli(tmp_path, redis_overrides, "usage", *logs, *flags, "--json")
        assert done.returncode == 0, done.stderr
        from_files = json.loads(done.stdout)
        query = "&".join(f"by={d}" for d in by)
        for name in REPLICAS:
            # Each replica writes its counters in the background, at once.
            matches = functools.partial(_fleet_equals, fleet[name], query, from_files)
            assert await poll_until(matches), (name, by)
        if by == ["key"]:  # the sum is what was sent, not merely equal
            totals = {(r["key"], r["requests"], r["denied"]) for r in from_files}
            # The wrong secret did not parse as a token: no key id.
            assert totals == {(None, 0, 1), ("alice", 6, 0), ("reader", 1, 1)}


async def test_audit_verify_checks_both_replicas_files(
    fleet: dict[str, Stack],
    make_redis_key: MakeKey,
    redis_overrides: dict[str, Any],
    tmp_path: Path,
) -> None:
    """Both replicas' files verify; an edit in b's fails b, naming its file."""
    sent = await _traffic(fleet, make_redis_key)
    a, b = (_audit_file(tmp_path, name) for name in REPLICAS)
    assert await poll_until(lambda: len(read_audit(a)) + len(read_audit(b)) == sent)
    done = await _cli(tmp_path, redis_overrides, "audit", "verify", str(a), str(b))
    assert done.returncode == 0, done.stdout
    assert done.stdout.splitlines() == [
        f"ok: {a}: {len(read_audit(a))} records in 1 file(s)",
        f"ok: {b}: {len(read_audit(b))} records in 1 file(s)",
        "ok: 2 chains",
    ]
    lines = b.read_bytes().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"replica":"b"', b'"replica":"a"')
    b.write_bytes(b"".join(lines))
    done = await _cli(tmp_path, redis_overrides, "audit", "verify", str(a), str(b))
    assert done.returncode == 1
    out = done.stdout.splitlines()
    assert out[0].startswith(f"ok: {a}: ")
    assert out[1].startswith(f"FAILED: {b}: after 0 good records: {b}:1: edited")
    assert out[2] == "FAILED: 1 of 2 chains"


async def test_the_admin_trail_names_the_replica(
    fleet: dict[str, Stack], tmp_path: Path
) -> None:
    """A key created through b's admin API is recorded in b's trail as b's."""
    status, _ = await fleet["b"].api("POST", "/admin/keys", {"name": "new"})
    assert status == 201
    (record,) = read_audit(tmp_path / "b" / "admin.jsonl")
    assert (record["action"], record["replica"]) == ("create", "b")
