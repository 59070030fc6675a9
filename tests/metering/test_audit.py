"""metering.audit: the writer's durability, rotation, failures and file safety."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from authproxy.cli.main import main
from authproxy.config.model import AuditConfig
from authproxy.errors import ConfigError
from authproxy.metering.audit import AuditWriter
from authproxy.metering.chain import (
    ChainState,
    check_line,
    tail_state,
    verify_files,
)
from authproxy.metering.logfiles import rotated_files
from tests.metering.chainformat import RECORDS, reference_lines
from tests.support.audit import (
    read_audit,
    sealed_lines,
    wait_audit,
    write_n,
    writer_for,
)
from tests.support.payloads import chat
from tests.support.polling import poll_until


class TestTornLines:
    """A short write leaves the start of a record; the record follows whole."""

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


class TestBatches:
    """``append_soon``: the records of one loop turn are sealed and written together."""

    async def test_one_turns_records_go_out_together_in_order(
        self, tmp_path: Path
    ) -> None:
        """Nothing is written during the turn; at the next, every record, in order."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path)
        for i in range(5):
            writer.append_soon({"n": i})
        assert (writer.waiting, writer.written, read_audit(path)) == (5, 0, [])
        await asyncio.sleep(0)
        assert (writer.waiting, writer.written) == (0, 5)
        assert [r["n"] for r in read_audit(path)] == [0, 1, 2, 3, 4]
        assert [r["seq"] for r in read_audit(path)] == [1, 2, 3, 4, 5]
        assert tail_state(path) == writer.state
        writer.close()
        assert verify_files([path]).records == 5

    async def test_close_and_reopen_write_what_waits(self, tmp_path: Path) -> None:
        """A stop or a logrotate reopen in the same turn loses no waiting record."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path)
        writer.append_soon({"n": 0})
        path.rename(tmp_path / "a.jsonl.1")
        writer.reopen()
        assert [r["n"] for r in read_audit(path)] == [0]
        writer.append_soon({"n": 1})
        writer.close()
        assert [r["n"] for r in read_audit(path)] == [0, 1]
        await asyncio.sleep(0)  # the turn's scheduled write finds nothing left
        assert writer.written == 2

    def test_outside_an_event_loop_it_writes_at_once(self, tmp_path: Path) -> None:
        """Without a running loop there is no next turn: the record goes out now."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path)
        writer.append_soon({"n": 0})
        assert [r["n"] for r in read_audit(path)] == [0]
        writer.close()

    def test_write_all_writes_the_documented_lines(self, tmp_path: Path) -> None:
        """A turn's records handed over at once are the docs' lines, in one file."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path)
        writer.write_all(RECORDS[:4])
        writer.write_all(RECORDS[4:])
        writer.close()
        lines, state = reference_lines(RECORDS, ChainState())
        assert path.read_bytes() == b"".join(lines)
        assert (writer.written, writer.state) == (len(RECORDS), state)

    def test_write_all_follows_waiting_records(self, tmp_path: Path) -> None:
        """Records already waiting go first, then the handed-over ones, chained."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path)
        writer.add({"n": 0})
        writer.write_all([{"n": 1}, {"n": 2}])
        assert (writer.waiting, writer.written) == (0, 3)
        writer.close()
        lines, _ = reference_lines([{"n": 0}, {"n": 1}, {"n": 2}], ChainState())
        assert path.read_bytes() == b"".join(lines)

    def test_an_unencodable_record_keeps_the_chain_whole(self, tmp_path: Path) -> None:
        """A record orjson refuses raises; those before it are kept, chained."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path)
        with pytest.raises(TypeError):
            writer.write_all([{"n": 0}, {"n": object()}, {"n": 2}])
        writer.write_all([{"n": 3}])
        writer.close()
        assert [(r["n"], r["seq"]) for r in read_audit(path)] == [(0, 1), (3, 2)]
        assert verify_files([path]).ok

    def test_a_batch_over_the_write_size_is_split(self, tmp_path: Path) -> None:
        """More than ``BATCH_BYTES`` waiting goes out in several whole writes."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path)
        records = [{"n": i, "pad": "x" * 100_000} for i in range(6)]
        writer.write_all(records)
        writer.close()
        lines, state = reference_lines(records, ChainState())
        assert path.read_bytes() == b"".join(lines)
        assert (writer.written, writer.state) == (6, state)

    async def test_batches_respect_rotation(self, tmp_path: Path) -> None:
        """A batch that would pass ``max_bytes`` is split at the rotation."""
        path = tmp_path / "a.jsonl"
        writer = writer_for(path, max_bytes=600, backups=3)
        for i in range(8):
            writer.append_soon({"n": i, "pad": "x" * 60})
        await asyncio.sleep(0)
        writer.close()
        files = rotated_files(path)
        assert len(files) > 1
        assert all(f.stat().st_size <= 600 for f in files)
        records = [r for f in files for r in read_audit(f)]
        assert [r["n"] for r in records] == list(range(8))
        assert verify_files(files).records == 8


async def test_concurrent_requests_give_whole_lines(
    proxy, bearer, audit_path: Path, capsys
) -> None:
    """200 concurrent requests: 200 whole lines, a valid chain, tamper-evident."""
    body = chat("x")
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
