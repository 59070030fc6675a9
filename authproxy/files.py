"""File signatures: notice a file that was rewritten, replaced or swapped by symlink."""

from __future__ import annotations

import os
from pathlib import Path

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
