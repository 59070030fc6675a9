"""files: signatures that notice a rewrite or a swap, atomic replaces, the lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from authproxy.errors import KeyStoreError
from authproxy.files import file_signature, store_lock, write_file_atomically

# Try the lock from another process, without waiting: exit 1 if it is held.
TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
"""


def test_signature_of_nothing_is_none(tmp_path: Path) -> None:
    """No path, or a path that does not exist, has no signature."""
    assert file_signature(None) is None
    assert file_signature(tmp_path / "missing") is None


def test_a_rewrite_changes_the_signature(tmp_path: Path) -> None:
    """Writing the file again (another size or time) gives another signature."""
    path = tmp_path / "keys.yaml"
    path.write_text("a")
    before = file_signature(path)
    assert file_signature(path) == before
    path.write_text("ab")
    assert file_signature(path) != before


def test_a_symlink_swap_changes_the_signature(tmp_path: Path) -> None:
    """A swapped ..data link shows as a new inode, even with the same bytes."""
    for version in ("v1", "v2"):
        (tmp_path / version).mkdir()
        (tmp_path / version / "keys.yaml").write_text("same")
    (tmp_path / "..data").symlink_to("v1")
    link = tmp_path / "keys.yaml"
    link.symlink_to("..data/keys.yaml")
    before = file_signature(link)
    (tmp_path / "..next").symlink_to("v2")
    (tmp_path / "..next").replace(tmp_path / "..data")
    after = file_signature(link)
    assert before is not None
    assert after is not None
    assert after[1] != before[1]


def test_atomic_write_replaces_the_file_whole(tmp_path: Path) -> None:
    """The new file has mode 0600; a reader of the old one still sees the old bytes."""
    path = tmp_path / "dir" / "keys.yaml"
    write_file_atomically(path, b"old")
    with path.open("rb") as reader:
        write_file_atomically(path, b"new")
        assert reader.read() == b"old"
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["keys.yaml"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """When the rename fails, the error names the file and the temp file is gone."""
    path = tmp_path / "keys.yaml"
    path.mkdir()  # a directory where the file should go: os.replace fails
    with pytest.raises(KeyStoreError, match=f"{path}: cannot write"):
        write_file_atomically(path, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.yaml"]


def test_an_unwritable_directory_is_a_key_store_error(tmp_path: Path) -> None:
    """A parent that is a file cannot hold the store: a clear KeyStoreError."""
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(KeyStoreError, match="cannot write"):
        write_file_atomically(blocker / "keys.yaml", b"x")
    with pytest.raises(KeyStoreError, match="cannot lock"), store_lock(blocker / "x"):
        pass


def test_the_lock_excludes_other_processes(tmp_path: Path) -> None:
    """While one writer holds <store>.lock, another process cannot take it."""
    path = tmp_path / "keys.yaml"
    lock = tmp_path / "keys.yaml.lock"

    def other_gets_it() -> bool:
        done = subprocess.run(
            [sys.executable, "-c", TRY_LOCK, str(lock)], check=False, timeout=30
        )
        return done.returncode == 0

    with store_lock(path):
        assert lock.exists()
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
        assert other_gets_it() is False
    assert other_gets_it() is True
