"""The audit writer and its hash chain: durability, rotation, failures, verify."""

from __future__ import annotations

import asyncio
import stat
import sys
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.cli.main import main
from authproxy.config.model import AuditConfig
from authproxy.errors import ConfigError
from authproxy.metering.audit import AuditWriter, rotated_files
from authproxy.metering.chain import (
    GENESIS,
    ChainState,
    check_line,
    seal,
    tail_state,
    verify_files,
)
from authproxy.web.appkeys import AUDIT_KEY
from tests.conftest import poll_until, read_audit, wait_audit
from tests.support.fake_ollama.server import FakeOllama


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


class TestChain:
    def test_seal_and_check(self) -> None:
        """A sealed line verifies and carries seq, prev_hash and hash last."""
        line, state = seal({"a": 1}, ChainState())
        record, after = check_line(line.rstrip(b"\n"), ChainState())
        assert after == state
        assert list(record) == ["a", "seq", "prev_hash"]
        assert record["prev_hash"] == GENESIS
        assert line.endswith(f',"hash":"{state.hash}"}}\n'.encode())
        assert line.isascii()

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (
                lambda ls: ls.__setitem__(2, ls[2].replace(b'"n":2', b'"n":3')),
                "3: edited",
            ),
            (lambda ls: ls.pop(2), "3: missing records: seq 4 follows seq 2"),
            (lambda ls: ls.insert(1, ls.pop(3)), "2: missing records"),
            (
                lambda ls: ls.__setitem__(2, ls[2][:-10]),
                "4: missing records: seq 4 follows seq 2 (after the torn line at ",
            ),
            (lambda ls: ls.__setitem__(0, b"garbage"), "1: not a sealed audit record"),
            (lambda ls: ls.append(b"garbage"), "6: not a sealed audit record"),
        ],
        ids=[
            "edited-byte",
            "deleted-line",
            "reordered",
            "truncated-middle",
            "garbage",
            "garbage-last",
        ],
    )
    def test_tampering_is_reported_at_the_first_bad_line(
        self, tmp_path: Path, mutate, message
    ) -> None:
        """Edits, deletions, reordering and truncation each name the first bad line."""
        path = tmp_path / "a.jsonl"
        write_n(writer_for(path), 5)
        assert verify_files([path]).ok
        lines = path.read_bytes().splitlines()
        mutate(lines)
        path.write_bytes(b"\n".join(lines) + b"\n")
        report = verify_files([path])
        assert not report.ok
        assert f"{path}:{message}" in str(report.error)


class TestTornLines:
    """A short write leaves the start of a record; the record follows whole."""

    def test_torn_then_written_whole_is_a_warning(self, tmp_path: Path) -> None:
        """A torn line that the next record completes is skipped with its location."""
        ls = sealed_lines(4)
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + ls[2][:30] + b"\n" + ls[2] + ls[3])
        report = verify_files([path])
        assert (report.ok, report.records, report.files, report.torn) == (
            True,
            4,
            1,
            1,
        )
        assert report.warnings == (
            f"{path}:3: torn line skipped (a short write): its record, seq 3, "
            f"was written whole at {path}:4",
        )

    def test_torn_at_the_end_of_one_file_completed_in_the_next(
        self, tmp_path: Path
    ) -> None:
        """Rotated between a tear and its retry: the next file completes it."""
        ls = sealed_lines(4)
        old, new = tmp_path / "a.jsonl.1", tmp_path / "a.jsonl"
        old.write_bytes(ls[0] + ls[1] + ls[2][:-20])
        new.write_bytes(ls[2] + ls[3])
        report = verify_files([old, new])
        assert (report.ok, report.records, report.files) == (True, 4, 2)
        assert report.warnings == (
            f"{old}:3: torn line skipped (a short write): its record, seq 3, "
            f"was written whole at {new}:1",
        )

    def test_repeated_torn_writes_and_an_empty_line(self, tmp_path: Path) -> None:
        """Several failed retries of a record (one wrote only a newline) all pass."""
        ls = sealed_lines(3)
        path = tmp_path / "a.jsonl"
        path.write_bytes(
            ls[0] + ls[1][:10] + b"\n" + ls[1][:200] + b"\n" + b"\n" + ls[1] + ls[2]
        )
        report = verify_files([path])
        assert (report.ok, report.records, report.torn) == (True, 3, 3)
        assert [w.split(": ")[0] for w in report.warnings] == [
            f"{path}:2",
            f"{path}:3",
            f"{path}:4",
        ]

    def test_torn_line_of_a_lost_record_fails(self, tmp_path: Path) -> None:
        """A torn record that never came whole (a restart lost it) fails at the tear."""
        ls = sealed_lines(3)
        other = seal({"n": 99}, check_line(ls[1].rstrip(), None)[1])[0]
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + other[:40] + b"\n" + ls[2])
        report = verify_files([path])
        assert report.records == 2
        assert report.error == (
            f"{path}:3: not a sealed audit record (no trailing hash), "
            f"nor a torn write of the record at {path}:4"
        )

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (
                lambda ls: ls[0] + ls[1][:25] + b"\n" + ls[2],
                "3: missing records: seq 3 follows seq 1 (after the torn line at ",
            ),
            (
                lambda ls: (
                    ls[0] + ls[1][:25] + b"\n" + ls[1].replace(b'"n":1', b'"n":7')
                ),
                "3: edited: its hash does not match its content",
            ),
        ],
        ids=["missing", "edited"],
    )
    def test_a_torn_line_hides_no_missing_or_edited_record(
        self, tmp_path: Path, content, message
    ) -> None:
        """After a torn line, a gap or an edited record still fails verification."""
        path = tmp_path / "a.jsonl"
        path.write_bytes(content(sealed_lines(3)))
        report = verify_files([path])
        assert not report.ok
        assert str(report.error).startswith(f"{path}:{message}")

    @pytest.mark.parametrize("ending", [b"", b"\n"], ids=["no-newline", "newline"])
    def test_torn_last_line_is_a_warning(self, tmp_path: Path, ending: bytes) -> None:
        """A torn line after the last record is an unfinished write: ok, warned."""
        ls = sealed_lines(3)
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + ls[2][:-5] + ending)
        report = verify_files([path])
        assert (report.ok, report.records, report.torn) == (True, 2, 1)
        assert report.warnings[0] == (
            f"{path}:3: torn last line skipped: an unfinished write; its record "
            "is not in the log (still waiting to be written, or lost)"
        )

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

    def test_writer_ends_a_torn_line_left_by_an_earlier_process(
        self, tmp_path: Path, log_capture
    ) -> None:
        """A new writer finds a torn tail, continues the chain on a new line."""
        path = tmp_path / "a.jsonl"
        ls = sealed_lines(3)
        path.write_bytes(ls[0] + ls[1] + ls[2][:50])  # seq 3 was lost with its process
        writer = writer_for(path)
        assert writer.state.seq == 2
        write_n(writer, 1)
        writer.close()
        assert log_capture.events("audit_chain_restarted") == []
        lines = path.read_bytes().split(b"\n")
        assert lines[2] == ls[2][:50]
        assert check_line(lines[3], None)[1].seq == 3
        report = verify_files([path])
        assert report.error == (
            f"{path}:3: not a sealed audit record (no trailing hash), "
            f"nor a torn write of the record at {path}:4"
        )

    def test_tail_state_passes_over_torn_lines(self, tmp_path: Path) -> None:
        """The chain resumes from the last sealed record, not from a torn line."""
        ls = sealed_lines(2)
        path = tmp_path / "a.jsonl"
        path.write_bytes(ls[0] + ls[1] + ls[1][:20] + b"\n\n" + ls[1][:7])
        assert tail_state(path) == check_line(ls[1].rstrip(), None)[1]


class TestWriter:
    def test_mode_and_append_only(self, tmp_path: Path) -> None:
        """The file is created 0600 and only ever appended to."""
        path = tmp_path / "audit" / "usage.jsonl"
        writer = writer_for(path)
        write_n(writer, 3)
        writer.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [r["n"] for r in read_audit(path)] == [0, 1, 2]
        assert writer.written == 3

    def test_chain_continues_across_restarts(self, tmp_path: Path) -> None:
        """A new writer picks up seq and hash from the file's last line."""
        path = tmp_path / "usage.jsonl"
        first = writer_for(path)
        write_n(first, 2)
        first.close()
        second = writer_for(path)
        write_n(second, 2, start=2)
        second.close()
        assert [r["seq"] for r in read_audit(path)] == [1, 2, 3, 4]
        assert verify_files([path]).records == 4

    def test_size_rotation_keeps_the_chain(self, tmp_path: Path) -> None:
        """Built-in rotation renames to .1, .2 ...; the chain spans the files."""
        path = tmp_path / "usage.jsonl"
        writer = writer_for(path, max_bytes=1000, backups=3)
        write_n(writer, 20)  # about 4 records per file: the oldest file is dropped
        writer.close()
        files = rotated_files(path)
        assert [f.name for f in files] == [
            "usage.jsonl.3",
            "usage.jsonl.2",
            "usage.jsonl.1",
            "usage.jsonl",
        ]
        assert all(f.stat().st_size <= 1000 for f in files)
        report = verify_files(files)
        assert report.ok
        assert report.records == sum(len(read_audit(f)) for f in files) == 16
        assert read_audit(files[0])[0]["seq"] == 5

    def test_logrotate_then_restart_resumes_from_backup(self, tmp_path: Path) -> None:
        """After logrotate moved the file, a new writer chains to usage.jsonl.1."""
        path = tmp_path / "usage.jsonl"
        writer = writer_for(path)
        write_n(writer, 3)
        writer.close()
        path.rename(path.with_name("usage.jsonl.1"))
        writer = writer_for(path)
        write_n(writer, 2, start=3)
        writer.close()
        assert read_audit(path)[0]["seq"] == 4
        assert verify_files(rotated_files(path)).records == 5

    def test_reopen_after_move(self, tmp_path: Path) -> None:
        """reopen() (SIGHUP) starts a new file that continues the chain."""
        path = tmp_path / "usage.jsonl"
        writer = writer_for(path)
        write_n(writer, 2)
        path.rename(tmp_path / "usage.jsonl.1")
        write_n(writer, 1, start=2)  # still goes to the moved file
        writer.reopen()
        write_n(writer, 1, start=3)
        writer.close()
        assert [r["n"] for r in read_audit(path)] == [3]
        assert verify_files(rotated_files(path)).records == 4

    def test_failures_are_counted_and_records_kept(
        self, tmp_path: Path, log_capture
    ) -> None:
        """If the file cannot be written, records wait in order and the chain holds."""
        blocker = tmp_path / "audit"
        blocker.write_text("not a directory")
        path = blocker / "usage.jsonl"
        writer = AuditWriter(AuditConfig(file=str(path)))  # opened lazily: fails
        write_n(writer, 3)
        assert (writer.healthy, writer.errors, writer.written) == (False, 3, 0)
        assert len(log_capture.events("audit_write_failed")) == 1
        blocker.unlink()
        write_n(writer, 1, start=3)
        writer.close()
        assert writer.healthy is True
        assert [r["n"] for r in read_audit(path)] == [0, 1, 2, 3]
        assert verify_files([path]).ok
        assert log_capture.events("audit_write_recovered")

    def test_backlog_overflow_drops_oldest_and_shows_in_the_chain(
        self, tmp_path: Path
    ) -> None:
        """A bounded backlog drops the oldest records; verify then reports the gap."""
        blocker = tmp_path / "audit"
        blocker.write_text("x")
        path = blocker / "usage.jsonl"
        writer = AuditWriter(AuditConfig(file=str(path), backlog=2))
        write_n(writer, 5)
        assert writer.dropped == 3
        blocker.unlink()
        write_n(writer, 1, start=5)
        assert [r["n"] for r in read_audit(path)] == [3, 4, 5]
        assert tail_state(path) == writer.state


class TestFiles:
    """The audit file is never reached through a symlink and is always 0600."""

    def test_existing_file_is_narrowed_to_0600(self, tmp_path: Path) -> None:
        """A file that existed with mode 0644 becomes 0600 when the writer opens it."""
        path = tmp_path / "usage.jsonl"
        path.write_bytes(b"")
        path.chmod(0o644)
        writer = writer_for(path)
        write_n(writer, 1)
        writer.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_symlink_is_refused_at_open(self, tmp_path: Path) -> None:
        """A symlink at audit.file stops start-up with an error naming the setting."""
        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        path = tmp_path / "usage.jsonl"
        path.symlink_to(victim)
        with pytest.raises(ConfigError) as info:
            writer_for(path)
        assert str(info.value) == (
            f"audit.file: cannot open {path}: is a symbolic link; refusing to follow it"
        )
        assert victim.read_text() == "precious\n"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o644

    def test_symlink_planted_before_a_reopen_is_not_followed(
        self, tmp_path: Path, log_capture
    ) -> None:
        """At reopen a symlink fails the write (retried later); nothing goes through."""
        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        path = tmp_path / "usage.jsonl"
        writer = writer_for(path)
        write_n(writer, 1)
        path.rename(tmp_path / "usage.jsonl.1")
        path.symlink_to(victim)
        writer.reopen()
        write_n(writer, 1, start=1)
        assert victim.read_text() == "precious\n"
        assert not writer.healthy
        [failed] = log_capture.events("audit_write_failed")
        assert failed["error"] == "is a symbolic link; refusing to follow it"
        path.unlink()
        write_n(writer, 1, start=2)
        writer.close()
        assert [r["n"] for r in read_audit(path)] == [1, 2]
        assert verify_files(rotated_files(path)).records == 3

    def test_rotation_moves_symlinks_without_following_them(
        self, tmp_path: Path
    ) -> None:
        """Rotation renames a symlinked backup as a name; its target is untouched."""
        victim = tmp_path / "victim"
        victim.write_text("precious\n")
        path = tmp_path / "usage.jsonl"
        (tmp_path / "usage.jsonl.1").symlink_to(victim)
        writer = writer_for(path, max_bytes=1000, backups=3)
        write_n(writer, 8)  # one rotation
        writer.close()
        assert (tmp_path / "usage.jsonl.2").is_symlink()
        assert not (tmp_path / "usage.jsonl.1").is_symlink()
        assert victim.read_text() == "precious\n"
        assert verify_files([tmp_path / "usage.jsonl.1", path]).records == 8

    async def test_failed_writes_are_retried_without_new_records(
        self, tmp_path: Path, log_capture
    ) -> None:
        """With no traffic, the writer retries by itself and writes its backlog."""
        blocker = tmp_path / "audit"
        blocker.write_text("not a directory")
        path = blocker / "usage.jsonl"
        writer = AuditWriter(AuditConfig(file=str(path)))
        write_n(writer, 2)
        assert (writer.healthy, writer.errors) == (False, 2)
        blocker.unlink()
        await poll_until(lambda: writer.healthy, within=3.0)
        assert writer.healthy is True
        assert [r["n"] for r in read_audit(path)] == [0, 1]
        assert log_capture.events("audit_write_recovered")
        writer.close()


async def test_proxy_narrows_an_existing_audit_file(
    start_proxy, audit_path: Path
) -> None:
    """A proxy started on a pre-existing 0644 audit file leaves it 0600."""
    audit_path.parent.mkdir(parents=True)
    audit_path.write_bytes(b"")
    audit_path.chmod(0o644)
    await start_proxy()
    assert stat.S_IMODE(audit_path.stat().st_mode) == 0o600


async def test_serve_refuses_a_symlinked_audit_file(
    config_file: Path, audit_path: Path, tmp_path: Path, key
) -> None:
    """serve exits 2 with one line naming audit.file when it is a symlink."""
    victim = tmp_path / "victim"
    victim.write_text("")
    audit_path.parent.mkdir(parents=True)
    audit_path.symlink_to(victim)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode() == (
        f"authproxy: audit.file: cannot open {audit_path}: is a symbolic link; "
        "refusing to follow it\n"
    )
    assert victim.read_text() == ""


async def test_proxy_keeps_serving_when_audit_fails(
    start_proxy, key, tmp_path: Path, fake: FakeOllama
) -> None:
    """With audit.required false, a broken audit file does not stop traffic."""
    blocker = tmp_path / "blocked"
    blocker.mkdir()
    client = await start_proxy({"audit.file": str(blocker / "usage.jsonl")})
    (blocker / "usage.jsonl").unlink()
    blocker.rmdir()
    blocker.write_text("now a file")
    client.app[AUDIT_KEY].reopen()
    resp = await client.get(
        "/api/tags", headers={"Authorization": f"Bearer {key.token}"}
    )
    assert resp.status == HTTPStatus.OK
    assert client.app[AUDIT_KEY].errors >= 1


async def test_required_audit_refuses_requests_until_it_works(
    start_proxy, key, tmp_path: Path, fake: FakeOllama
) -> None:
    """With audit.required true, an unwritable log means 503 until writing works."""
    target = tmp_path / "req" / "usage.jsonl"
    client = await start_proxy({"audit.file": str(target), "audit.required": True})
    writer = client.app[AUDIT_KEY]
    auth = {"Authorization": f"Bearer {key.token}"}
    assert (await client.get("/api/tags", headers=auth)).status == HTTPStatus.OK
    target.unlink()
    target.parent.rmdir()
    target.parent.write_text("blocked")
    writer.reopen()
    fake.received.clear()
    await client.get("/api/tags", headers=auth)
    resp = await client.get("/api/tags", headers=auth)
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert await resp.json() == {"error": "audit log unavailable"}
    assert fake.received == []
    target.parent.unlink()
    resp = await client.get("/api/tags", headers=auth)  # its 503 record heals the log
    assert resp.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert (await client.get("/api/tags", headers=auth)).status == HTTPStatus.OK
    records = read_audit(target)
    # Records that could not be written were kept and written in order once
    # the log worked again; seq 1 went with the removed file.
    assert [(r["seq"], r["status"], r["reason"]) for r in records] == [
        (2, 503, "audit_unavailable"),
        (3, 503, "audit_unavailable"),
        (4, 503, "audit_unavailable"),
        (5, 200, None),
    ]
    assert verify_files([target]).ok


async def test_concurrent_requests_give_whole_lines(
    proxy, bearer, audit_path: Path, capsys
) -> None:
    """200 concurrent requests: 200 whole lines, a valid chain, tamper-evident."""
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
    replies = await asyncio.gather(
        *(proxy.post("/api/chat", json=body, headers=bearer) for _ in range(200))
    )
    await asyncio.gather(*(r.read() for r in replies))
    records = await wait_audit(audit_path, 200)
    assert len(records) == 200
    assert sorted(r["seq"] for r in records) == list(range(1, 201))
    assert len({r["request_id"] for r in records}) == 200
    assert main(["audit", "verify", str(audit_path)]) == 0
    assert capsys.readouterr().out.strip() == "ok: 200 records in 1 file(s)"
    data = bytearray(audit_path.read_bytes())
    data[data.index(b'"status":200', 5000) + 10] = ord("1")  # one byte in one line
    audit_path.write_bytes(bytes(data))
    assert main(["audit", "verify", str(audit_path)]) == 1
    assert "edited" in capsys.readouterr().out


async def test_deleting_one_line_is_detected(
    proxy, bearer, audit_path: Path, capsys
) -> None:
    """Removing a single record from the middle fails verification at its successor."""
    for _ in range(5):
        await (await proxy.get("/api/tags", headers=bearer)).read()
    await wait_audit(audit_path, 5)
    lines = audit_path.read_bytes().splitlines(keepends=True)
    audit_path.write_bytes(b"".join(lines[:2] + lines[3:]))
    assert main(["audit", "verify", str(audit_path)]) == 1
    assert capsys.readouterr().out.strip() == (
        f"FAILED after 2 good records: {audit_path}:3: missing records: "
        "seq 4 follows seq 2"
    )


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


async def test_bad_audit_file_stops_start_up_before_a_token_is_made(
    config_file: Path, audit_path: Path, keys_path: Path, tmp_path: Path
) -> None:
    """On a first run, an unusable audit.file stops serve before the store exists."""
    audit_path.parent.mkdir(parents=True)
    audit_path.symlink_to(tmp_path / "victim")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config_file),
        "--listen",
        "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"audit.file: cannot open" in err
    assert out == b""
    assert not keys_path.exists()
