"""Files: signatures that notice a rewrite or a swap, atomic replaces, write locks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from authproxy.errors import KeyStoreError

Signature = tuple[int, int, int, int]


def file_signature(path: str | Path | None) -> Signature | None:
    """Return device, inode, size and mtime of ``path``, or ``None`` if unreadable.

    ``stat`` follows symlinks, so a swapped link (a Kubernetes Secret's
    ``..data``, certbot's ``live/``) shows up as a new inode.
    """
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def write_file_atomically(path: Path, data: bytes) -> None:
    """Replace a file: temp file in the same directory, one write, fsync, rename.

    The file gets mode 0600.

    Raises:
        KeyStoreError: the directory is not writable.
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as err:
        raise KeyStoreError(f"{path}: cannot write: {err.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise KeyStoreError(f"{path}: cannot write: {err.strerror}") from None


@contextlib.contextmanager
def store_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<store>.lock`` so writers never lose updates.

    Raises:
        KeyStoreError: the lock file cannot be created.
    """
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise KeyStoreError(f"{lock_path}: cannot lock: {err.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
