"""The log files' safety: opened without following symlinks, mode 0600; their backups.

Shared by the audit log (``metering.audit``) and the admin trail
(``metering.trail``), and by everything that reads them back in order.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final

FILE_MODE: Final = 0o600
OPEN_FLAGS: Final = (
    # Read access too: the last byte says whether a line was left torn.
    os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
)


def open_private(path: Path, flags: int = OPEN_FLAGS) -> int:
    """Open a log file without following a symlink; make it mode 0600.

    A file that already existed with a wider mode is narrowed to 0600.

    Raises:
        OSError: the file cannot be opened or narrowed; a symlink at ``path``
            gives ``ELOOP`` with a message that says so.
    """
    try:
        fd = os.open(path, flags, FILE_MODE)
    except OSError as err:
        if err.errno == errno.ELOOP and path.is_symlink():
            raise OSError(
                errno.ELOOP, "is a symbolic link; refusing to follow it"
            ) from None
        raise
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def rotated_files(path: Path) -> list[Path]:
    """Return ``path`` and its numbered backups, oldest first."""
    backups = []
    for candidate in path.parent.glob(path.name + ".*"):
        suffix = candidate.name[len(path.name) + 1 :]
        if suffix.isdigit():
            backups.append((int(suffix), candidate))
    ordered = [p for _, p in sorted(backups, reverse=True)]
    return [*ordered, path] if path.exists() else ordered
