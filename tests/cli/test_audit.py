"""cli.audit: audit verify and usage from the shell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from authproxy.cli.main import main
from authproxy.config.model import AuditConfig
from authproxy.metering.audit import AuditWriter
from authproxy.metering.logfiles import rotated_files
from tests.support.admin import Stack
from tests.support.audit import (
    USAGE_RECORDS,
    sealed_lines,
    wait_audit,
    write_n,
    write_records,
    writer_for,
)
from tests.support.cli import run, run_cli, run_process
from tests.support.payloads import CHAT, CONTROL, NASTY, NASTY_SHOWN, chat


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
        "authproxy: audit.file is '-' (standard output): no file to read\n",
    )


def test_readable_table(capsys, log_file: Path) -> None:
    """The default output is an aligned table with a share column."""
    code, out, _ = run(capsys, "usage", "--audit-log", str(log_file), "--by", "key")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "key_id",
        "key",
        "requests",
        "denied",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "estimated_share",
    ]
    assert lines[1].split() == ["k1", "alice", "2", "0", "14", "9", "23", "34.8%"]


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


@pytest.mark.parametrize(
    "command", [["usage"], ["usage", "--by", "key"], ["audit", "verify"]]
)
def test_a_missing_log_is_named_with_its_absolute_path(
    capsys, tmp_path: Path, monkeypatch, command: list[str]
) -> None:
    """Without an audit log, usage and audit verify say where they looked; exit 1."""
    monkeypatch.chdir(tmp_path)
    Path("authproxy.yaml").write_text("audit:\n  file: audit/usage.jsonl\n")
    code, out, err = run(capsys, *command, "--config", "authproxy.yaml")
    absolute = tmp_path / "audit" / "usage.jsonl"
    assert (code, out) == (1, "")
    assert err == f"authproxy: no audit log at {absolute}\n"


def test_a_missing_named_log_is_an_error(capsys, tmp_path: Path, log_file) -> None:
    """Each --audit-log FILE must exist: a report that left one out would be wrong."""
    gone = tmp_path / "usage.jsonl.1"
    code, out, err = run(
        capsys, "usage", "--audit-log", str(gone), "--audit-log", str(log_file)
    )
    assert (code, out, err) == (1, "", f"authproxy: no audit log at {gone}\n")


def test_a_log_on_standard_output_cannot_be_read(capsys, tmp_path: Path) -> None:
    """With audit.file '-' the report says there is no file, rather than print none."""
    config = tmp_path / "authproxy.yaml"
    config.write_text("audit:\n  file: '-'\n")
    code, out, err = run(capsys, "usage", "--config", str(config))
    assert (code, out) == (1, "")
    assert err == "authproxy: audit.file is '-' (standard output): no file to read\n"


def test_an_unreadable_log_is_an_error(capsys, tmp_path: Path) -> None:
    """A log that cannot be read (here a directory) exits 1 with path and reason."""
    code, out, err = run(capsys, "usage", "--audit-log", str(tmp_path))
    assert (code, out) == (1, "")
    assert err == f"authproxy: cannot read {tmp_path}: Is a directory\n"


def test_the_table_says_what_requests_and_denied_mean(capsys, log_file) -> None:
    """Under the table, and in --help, the two counts are defined."""
    code, out, _ = run(capsys, "usage", "--audit-log", str(log_file))
    assert code == 0
    assert out.split("\n\n", 1)[1] == (
        "requests: admitted by authproxy and sent to Ollama (or tried: every "
        "outcome but denied), whatever Ollama answered\n"
        "denied: refused by authproxy itself (outcome denied: credentials, scopes, "
        "model allow-lists, limits, bad bodies); never sent to Ollama, no tokens\n"
    )
    with pytest.raises(SystemExit):
        main(["usage", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "requests: admitted by authproxy and sent to Ollama" in help_text
    assert "denied: refused by authproxy itself" in help_text


async def test_usage_through_the_proxy_adds_up(
    stack: Stack, key, audit_path: Path, config_file: Path, capsys
) -> None:
    """A key's token, JWT and wrong-secret requests make one row; an admin JWT none.

    The JWT names the model in another spelling of the same Ollama model, and the
    admin JWT's actor (carol) appears nowhere in the report.
    """
    alice = key.record
    assert await stack.call(str(key.token), "POST", "/api/chat", CHAT) == 200
    status, minted = await stack.api(
        "POST", f"/admin/keys/{alice.id}/tokens", {"ttl": "5m"}
    )
    assert status == 201
    body = chat(model="Llama3.2:latest")
    assert await stack.call(minted["token"], "POST", "/api/chat", body) == 200
    assert await stack.call(f"ap_{alice.id}_{'x' * 43}") == 401
    code, out = await run_cli(
        capsys, "admin-token", "--actor", "carol", "--config", str(config_file)
    )
    admin_jwt = out.strip()
    stack.secrets.add(admin_jwt)
    assert await stack.call(admin_jwt) == 403
    records = await wait_audit(audit_path, 4)
    assert [r["scheme"] for r in records] == ["bearer", "jwt", "bearer", "jwt"]
    args = ("usage", "--config", str(config_file), "--by", "key,model")
    code, out = await run_cli(capsys, *args, "--json")
    assert code == 0
    rows = {(r["key_id"], r["key"], r["model"]): r for r in json.loads(out)}
    assert {k: (r["requests"], r["denied"]) for k, r in rows.items()} == {
        (alice.id, "alice", "llama3.2:latest"): (2, 0),
        (alice.id, "alice", "-"): (0, 1),
        ("admin", None, "-"): (0, 1),
    }
    assert rows[(alice.id, "alice", "llama3.2:latest")]["total_tokens"] == 60
    code, out = await run_cli(
        capsys, "usage", "--config", str(config_file), "--by", "key"
    )
    assert code == 0
    assert "carol" not in out
    lines = [line.split() for line in out.splitlines()]
    assert [alice.id, "alice", "2", "1"] in [line[:4] for line in lines]
    assert ["admin", "-", "0", "1"] in [line[:4] for line in lines]


def _two_replicas(tmp_path: Path) -> tuple[Path, Path]:
    """Two replicas' audit logs, a with rotated backups, each its own chain."""
    a, b = tmp_path / "a" / "usage.jsonl", tmp_path / "b" / "usage.jsonl"
    a.parent.mkdir()
    b.parent.mkdir()
    writer = writer_for(a, max_bytes=400)  # about one record per file
    write_n(writer, 4)
    writer.close()
    assert a.with_name("usage.jsonl.1").exists()
    write_records(b, [{**r, "replica": "b"} for r in USAGE_RECORDS])
    return a, b


def test_verify_checks_each_replicas_chain_apart(tmp_path: Path, capsys) -> None:
    """Files of two replicas verify as two chains, each reported with its file."""
    a, b = _two_replicas(tmp_path)
    files = [*rotated_files(a), b]
    code, out, _ = run(capsys, "audit", "verify", *map(str, files))
    assert code == 0
    assert out.splitlines() == [
        f"ok: {a}: 4 records in {len(files) - 1} file(s)",
        f"ok: {b}: 4 records in 1 file(s)",
        "ok: 2 chains",
    ]


def test_verify_names_the_replica_file_that_was_tampered_with(
    tmp_path: Path, capsys
) -> None:
    """An edited line in b fails b's chain, naming b; a's chain still verifies."""
    a, b = _two_replicas(tmp_path)
    lines = b.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"prompt_tokens":4', b'"prompt_tokens":1')
    b.write_bytes(b"".join(lines))
    code, out, _ = run(capsys, "audit", "verify", str(b), str(a))
    assert code == 1
    assert out.splitlines() == [
        f"FAILED: {b}: after 1 good records: {b}:2: edited: its hash does not "
        "match its content",
        f"ok: {a}: 1 records in 1 file(s)",
        "FAILED: 1 of 2 chains",
    ]


def test_usage_sums_several_replicas_files(tmp_path: Path, capsys) -> None:
    """usage with one --audit-log per replica sums them; --by replica splits them."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(a, [{**r, "replica": "a"} for r in USAGE_RECORDS[:2]])
    write_records(b, [{**r, "replica": "b"} for r in USAGE_RECORDS[2:]])
    logs = ["--audit-log", str(a), "--audit-log", str(b)]
    code, out, _ = run(capsys, "usage", *logs, "--by", "replica", "--json")
    assert code == 0
    assert [(r["replica"], r["requests"], r["denied"]) for r in json.loads(out)] == [
        ("a", 2, 0),
        ("b", 1, 1),
    ]
    code, out, _ = run(capsys, "usage", *logs, "--json")
    assert [
        (r["requests"], r["denied"], r["total_tokens"]) for r in json.loads(out)
    ] == [(3, 1, 73)]
