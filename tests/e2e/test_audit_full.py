"""A full disk under the audit log, for real: a 64 KiB tmpfs filled to the brim."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

from authproxy.cli.main import main
from authproxy.config.model import AuditConfig
from authproxy.metering.audit import AuditWriter
from authproxy.metering.chain import (
    ChainError,
    ChainState,
    check_line,
    seal,
    tail_state,
    verify_files,
)
from authproxy.metering.logfiles import rotated_files
from authproxy.web.appkeys import AUDIT_KEY
from tests.support.polling import poll_until

PAGE = os.sysconf("SC_PAGE_SIZE")  # tmpfs hands out space a page at a time


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs mounted for the test (needs root, as the tests run)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        # Lazily: a proxy torn down after this fixture may still hold a file.
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(fs: Path) -> Path:
    """Write a filler file until the filesystem has no free page left."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="No space left") as info:  # noqa: PT012
            while True:
                os.write(fd, bytes(PAGE))
    finally:
        os.close(fd)
    assert info.value.errno == errno.ENOSPC
    return filler


def torn_tail(path: Path) -> bool:
    """Tell whether the file ends in the start of a record (a short write)."""
    tail = path.read_bytes().rsplit(b"\n", 1)[-1]
    if not tail:
        return False
    try:
        check_line(tail, None)
    except ChainError:
        return True
    return False  # a whole record that only lacks its newline


async def test_full_disk_keeps_serving_and_leaves_a_verifiable_log(
    small_fs: Path, start_proxy, key, tmp_path: Path, log_capture, capsys
) -> None:
    """On a full disk requests go on; once space returns every record is there.

    The write cut short leaves a torn line; after a logrotate-style reopen and
    the backlog flush, ``audit verify`` over both files passes with a warning
    that names the torn line.
    """
    audit = small_fs / "usage.jsonl"
    client = await start_proxy(
        {
            "audit.file": str(audit),
            "audit.admin_file": str(tmp_path / "admin.jsonl"),
            "limits.state_file": str(tmp_path / "limits-state.json"),
        }
    )
    writer = client.app[AUDIT_KEY]
    auth = {"Authorization": f"Bearer {key.token}"}
    ids: list[str] = []

    async def request() -> None:
        resp = await client.get("/api/tags", headers=auth)
        await resp.read()
        assert resp.status == HTTPStatus.OK
        ids.append(resp.headers["X-Request-ID"])

    await request()
    filler = fill(small_fs)
    # Records fill the audit file's last page; the one that needs another page
    # is cut short at the page's end. Should a record end exactly there, the
    # next write gets no byte at all: hand back one page and go on.
    for _ in range(60):
        if torn_tail(audit):
            break
        if not writer.healthy:
            os.truncate(filler, filler.stat().st_size - PAGE)
        await request()
    assert torn_tail(audit), "no write was cut short"
    assert not writer.healthy
    failed = log_capture.events("audit_write_failed")[-1]
    assert failed["path"] == str(audit)
    for _ in range(3):
        await request()  # still served while records wait in memory
    rotated = audit.with_name("usage.jsonl.1")
    audit.rename(rotated)  # logrotate moves the file, then sends SIGHUP
    writer.reopen()
    await request()
    assert not writer.healthy
    filler.unlink()
    await poll_until(lambda: writer.healthy, within=3.0)  # retried by itself
    assert writer.healthy is True
    for _ in range(2):
        await request()

    def records() -> list[dict[str, object]]:
        return [r for f in (rotated, audit) for r in read_audit_records(f)]

    await poll_until(lambda: len(records()) >= len(ids))
    assert sorted(str(r["request_id"]) for r in records()) == sorted(ids)
    assert main(["audit", "verify", str(rotated), str(audit)]) == 0
    out = capsys.readouterr().out.splitlines()
    warnings = [line for line in out if line.startswith("warning: ")]
    assert warnings
    assert all(
        line.startswith(f"warning: {rotated}:") and "torn line skipped" in line
        for line in warnings
    )
    assert out[-1] == (
        f"ok: {len(ids)} records in 2 file(s), {len(warnings)} torn line(s) skipped"
    )


def read_audit_records(path: Path) -> list[dict[str, object]]:
    """Return the whole records of an audit file, passing over torn lines."""
    records = []
    for line in path.read_bytes().split(b"\n"):
        try:
            records.append(check_line(line, None)[0])
        except ChainError:
            continue
    return records


def line_of(length: int, state: ChainState) -> dict[str, str]:
    """Return a record whose sealed line, after ``state``, is ``length`` bytes."""
    base = len(seal({"pad": ""}, state)[0])
    return {"pad": "x" * (length - base)}


def test_rotation_due_after_a_torn_write(small_fs: Path) -> None:
    """A rotation due at the retry leaves the tear in .1; the new file starts clean."""
    path = small_fs / "usage.jsonl"
    writer = AuditWriter(AuditConfig(file=str(path), max_bytes=PAGE + 500, backups=2))
    writer.open()
    writer.append(line_of(PAGE - 800, writer.state))
    filler = fill(small_fs)
    writer.append(line_of(1000, writer.state))  # crosses the page end: cut short
    assert (writer.healthy, writer.errors) == (False, 1)
    assert path.stat().st_size == PAGE
    filler.unlink()
    writer.append({"n": 3})  # the retry: PAGE + 1000 is past max_bytes, so rotate
    writer.close()
    assert writer.healthy is True
    files = rotated_files(path)
    assert [f.name for f in files] == ["usage.jsonl.1", "usage.jsonl"]
    assert path.read_bytes()[:1] == b"{"
    report = verify_files(files)
    assert (report.ok, report.records, report.files) == (True, 3, 2)
    assert report.warnings == (
        f"{files[0]}:2: torn line skipped (a short write): its record, seq 2, "
        f"was written whole at {path}:1",
    )


def test_a_record_whose_newline_did_not_fit(small_fs: Path) -> None:
    """A write short by only its newline counts as written; the next starts anew."""
    path = small_fs / "usage.jsonl"
    writer = AuditWriter(AuditConfig(file=str(path)))
    writer.open()
    writer.append(line_of(PAGE - 1000, writer.state))
    filler = fill(small_fs)
    writer.append(line_of(1001, writer.state))  # its newline needs another page
    assert (writer.healthy, writer.written, path.stat().st_size) == (True, 2, PAGE)
    assert tail_state(path) == writer.state
    writer.append({"n": 3})  # no room even for the newline that ends record 2
    assert (writer.healthy, writer.written) == (False, 2)
    filler.unlink()
    writer.close()
    assert writer.written == 3
    report = verify_files([path])
    assert (report.ok, report.records, report.warnings) == (True, 3, ())
    assert len(path.read_bytes().splitlines()) == 3


async def test_a_batch_cut_short_keeps_its_whole_records(small_fs: Path) -> None:
    """One write of three records cut inside the second: the first counts, two wait.

    The second's start is left torn; once there is room it and the third are
    written whole after a newline, and verify passes with one warning.
    """
    path = small_fs / "usage.jsonl"
    writer = AuditWriter(AuditConfig(file=str(path)))
    writer.open()
    writer.append(line_of(PAGE - 1500, writer.state))
    filler = fill(small_fs)
    state = writer.state
    first = line_of(1000, state)
    writer.append_soon(first)
    second = line_of(1000, seal(first, state)[1])
    writer.append_soon(second)
    writer.append_soon({"n": 4})
    await asyncio.sleep(0)  # one write(2): 1500 bytes fit of 2,000 and more
    assert (writer.healthy, writer.written, path.stat().st_size) == (False, 2, PAGE)
    assert torn_tail(path)
    filler.unlink()
    writer.close()
    assert writer.written == 4
    report = verify_files([path])
    assert (report.ok, report.records) == (True, 4)
    assert report.warnings == (
        f"{path}:3: torn line skipped (a short write): its record, seq 3, "
        f"was written whole at {path}:4",
    )
