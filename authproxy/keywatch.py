"""Hot reload of the key store: poll the file, swap tables, keep the last good one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import structlog

from authproxy.errors import KeyStoreError
from authproxy.keystore import KeyTable, read_store
from authproxy.verify import Verifier

log = structlog.stdlib.get_logger(__name__)

Signature = tuple[int, int, int, int] | None


def _signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class KeyStoreWatcher:
    """Reload the store when its file changes (also when a symlink is swapped)."""

    def __init__(self, path: Path, verifier: Verifier, interval: float) -> None:
        self.path = path
        self.interval = interval
        self.reloads = 0
        self.failures = 0
        self._verifier = verifier
        self._seen: Signature = None
        self._lock = asyncio.Lock()

    def load_initial(self) -> KeyTable:
        """Load the store synchronously at start-up.

        Raises:
            KeyStoreError: the store cannot be read or parsed.
        """
        self._seen = _signature(self.path)
        table = read_store(self.path)
        self._verifier.set_table(table)
        return table

    async def reload(self, *, force: bool = False) -> bool:
        """Reload if the file changed (or always, with ``force``).

        Returns:
            Whether a new table was put in service.
        """
        async with self._lock:
            signature = _signature(self.path)
            if not force and signature == self._seen:
                return False
            self._seen = signature
            loop = asyncio.get_running_loop()
            try:
                table = await loop.run_in_executor(None, read_store, self.path)
            except KeyStoreError as err:
                self.failures += 1
                log.error("keystore_reload_failed", path=str(self.path), error=str(err))
                return False
            self._verifier.set_table(table)
            self.reloads += 1
            log.info("keystore_reloaded", path=str(self.path), keys=len(table.records))
            return True

    async def run(self) -> None:
        """Poll forever; cancel the task to stop."""
        while True:
            await asyncio.sleep(self.interval)
            await self.reload()
