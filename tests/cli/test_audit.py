"""cli.audit: audit verify and usage from the shell."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from authproxy.cli.main import main
from authproxy.config.model import AuditConfig
from authproxy.metering.audit import AuditWriter, rotated_files
from authproxy.metering.chain import (
    ChainState,
    seal,
)
from tests.conftest import wait_audit


def writer_for(path: Path, **kw) -> AuditWriter:
    writer = AuditWriter(AuditConfig(file=str(path), **kw))
    writer.open()
    return writer


def write_n(writer: AuditWriter, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        writer.append({"n": i, "path": "/api/chat", "note": "ü<>&"})


def sealed_lines(n: int) -> list[bytes]:
    """Return ``n`` chained lines (each ending in a newline), as the writer seals."""
    lines, state = [], ChainState()
    for i in range(n):
        line, state = seal({"n": i, "path": "/api/chat" + "x" * 100}, state)
        lines.append(line)
    return lines


class TestTornLines:
    """A short write leaves the start of a record; the record follows whole."""

    def test_verify_cli_reports_torn_lines(self, tmp_path: Path, capsys) -> None:
        """audit verify exits 0, prints each torn line's location and the counts."""
        ls = sealed_lines(3)
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1][:9] + b"\n" + ls[1] + ls[2])
        assert main(["audit", "verify", str(path)]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"warning: {path}:2: torn line skipped (a short write): its record, "
            f"seq 2, was written whole at {path}:3",
            "ok: 3 records in 1 file(s), 1 torn line(s) skipped",
        ]


def test_verify_cli_defaults_to_configured_files(
    capsys, config_file: Path, audit_path: Path
) -> None:
    """audit verify with no FILE checks audit.file and its backups."""
    writer = writer_for(audit_path, max_bytes=800)
    write_n(writer, 6)
    writer.close()
    files = rotated_files(audit_path)
    assert len(files) > 1
    assert main(["audit", "verify", "--config", str(config_file)]) == 0
    assert capsys.readouterr().out.strip() == f"ok: 6 records in {len(files)} file(s)"


NASTY = "\x1b[31mred\x1b[0m\roverwritten\x07\x9b2J\u202eevil"


NASTY_SHOWN = r"\x1b[31mred\x1b[0m\roverwritten\x07\x9b2J\u202eevil"


CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")  # all but newline


async def test_usage_report_escapes_model_names(
    proxy, bearer, fake, audit_path: Path, config_file: Path, capsys
) -> None:
    """A model name with escapes, echoed by the upstream, is escaped in the table.

    (A request naming such a model is refused as an invalid name; the name in
    the record then comes from the response.)
    """
    fake.behaviour.reply_model = NASTY
    body = {"messages": [{"role": "user", "content": "x"}]}
    url = "/v1/chat/completions"
    await (await proxy.post(url, json=body, headers=bearer)).read()
    await wait_audit(audit_path, 1)
    args = ["usage", "--by", "model", "--config", str(config_file)]
    assert await asyncio.to_thread(main, args) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith(NASTY_SHOWN + "  ")
    assert CONTROL.search(out) is None
    assert await asyncio.to_thread(main, [*args, "--json"]) == 0
    out = capsys.readouterr().out
    assert CONTROL.search(out) is None
    assert json.loads(out)[0]["model"] == NASTY


def test_verify_messages_escape_file_names(tmp_path: Path, capsys) -> None:
    """audit verify never prints a control character from a file name."""
    path = tmp_path / "audit\x1b[2J.jsonl"
    path.write_bytes(b"garbage\n")
    assert main(["audit", "verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert out == (
        f"FAILED after 0 good records: {tmp_path}/audit\\x1b[2J.jsonl:1: "
        "not a sealed audit record (no trailing hash)\n"
    )


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


def test_readable_table(capsys, log_file: Path) -> None:
    """The default output is an aligned table with a share column."""
    code, out, _ = usage(capsys, "--audit-log", str(log_file), "--by", "key")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "key",
        "requests",
        "denied",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "estimated_share",
    ]
    assert lines[1].split() == ["alice", "2", "0", "14", "9", "23", "34.8%"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "colour"], "--by: unknown dimension 'colour'"),
        (["--since", "soon"], "invalid time 'soon'"),
    ],
    ids=["dimension", "time"],
)
def test_bad_arguments(capsys, log_file: Path, args, message) -> None:
    """Bad arguments exit 2 with a message."""
    code, _, err = usage(capsys, "--audit-log", str(log_file), *args)
    assert code == 2
    assert message in err


def test_defaults_to_the_configured_log(
    capsys, config_file: Path, audit_path: Path
) -> None:
    """Without --audit-log, audit.file and its backups are read."""
    writer = AuditWriter(AuditConfig(file=str(audit_path), max_bytes=600))
    writer.open()
    for record in RECORDS:
        writer.append(record)
    writer.close()
    code, out, _ = usage(capsys, "--config", str(config_file), "--json")
    assert code == 0
    assert json.loads(out)[0]["total_tokens"] == 73
