"""metering.logfiles: log files opened safely, and their backups found in order."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from authproxy.metering.logfiles import FILE_MODE, open_private, rotated_files


def test_a_new_file_is_private_and_appends(tmp_path: Path) -> None:
    """A new file is 0600; writes go to its end even after a seek."""
    path = tmp_path / "log.jsonl"
    fd = open_private(path)
    try:
        os.write(fd, b"one\n")
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"two\n")
    finally:
        os.close(fd)
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert path.read_bytes() == b"one\ntwo\n"


def test_a_wider_mode_is_narrowed(tmp_path: Path) -> None:
    """A file that existed as 0644 is 0600 once opened."""
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"")
    path.chmod(0o644)
    os.close(open_private(path))
    assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE


def test_a_symlink_is_refused_and_said_so(tmp_path: Path) -> None:
    """A symlink is never followed; the error names the reason."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    link = tmp_path / "log.jsonl"
    link.symlink_to(target)
    with pytest.raises(OSError, match="symbolic link") as info:
        open_private(link)
    assert info.value.errno == errno.ELOOP
    assert target.read_bytes() == b""


def test_rotated_files_oldest_first(tmp_path: Path) -> None:
    """Numbered backups come oldest (highest number) first, the live file last."""
    path = tmp_path / "usage.jsonl"
    for name in ("usage.jsonl.2", "usage.jsonl.10", "usage.jsonl.1", "usage.jsonl"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "usage.jsonl.old").write_bytes(b"")  # not a numbered backup
    assert [f.name for f in rotated_files(path)] == [
        "usage.jsonl.10",
        "usage.jsonl.2",
        "usage.jsonl.1",
        "usage.jsonl",
    ]
    path.unlink()
    assert rotated_files(path)[-1].name == "usage.jsonl.1"
