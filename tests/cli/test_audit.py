"""cli.audit: audit verify and usage from the shell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from authproxy.cli.main import main
from authproxy.config.model import AuditConfig
from authproxy.metering.audit import AuditWriter, rotated_files
from tests.support.audit import (
    USAGE_RECORDS,
    sealed_lines,
    wait_audit,
    write_n,
    writer_for,
)
from tests.support.cli import run, run_process
from tests.support.payloads import CONTROL, NASTY, NASTY_SHOWN


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


def test_verify_names_a_missing_log_in_full(tmp_path: Path) -> None:
    """A missing audit or admin log, given or configured, exits 1 naming its path."""
    (tmp_path / "site").mkdir()
    config = tmp_path / "site" / "authproxy.yaml"
    config.write_text("audit: {file: audit/usage.jsonl}\n")
    cases = [
        (["--config", str(config)], tmp_path / "site" / "audit" / "usage.jsonl"),
        (["admin.jsonl"], tmp_path / "admin.jsonl"),
    ]
    for args, missing in cases:
        done = run_process(tmp_path, "audit", "verify", *args)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == f"authproxy: no audit log at {missing}\n"
    config.write_text("audit: {file: '-'}\n")
    done = run_process(tmp_path, "audit", "verify", "--config", str(config))
    assert (done.returncode, done.stderr) == (
        1,
        "authproxy: audit.file is '-' (stdout): name the files\n",
    )


def test_readable_table(capsys, log_file: Path) -> None:
    """The default output is an aligned table with a share column."""
    code, out, _ = run(capsys, "usage", "--audit-log", str(log_file), "--by", "key")
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
    code, _, err = run(capsys, "usage", "--audit-log", str(log_file), *args)
    assert code == 2
    assert message in err


def test_defaults_to_the_configured_log(
    capsys, config_file: Path, audit_path: Path
) -> None:
    """Without --audit-log, audit.file and its backups are read."""
    writer = AuditWriter(AuditConfig(file=str(audit_path), max_bytes=600))
    writer.open()
    for record in USAGE_RECORDS:
        writer.append(record)
    writer.close()
    code, out, _ = run(capsys, "usage", "--config", str(config_file), "--json")
    assert code == 0
    assert json.loads(out)[0]["total_tokens"] == 73
