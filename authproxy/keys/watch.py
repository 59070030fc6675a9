"""Hot reload of the key store: poll the file, swap tables, keep the last good one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from authproxy.errors import KeyStoreError
from authproxy.files import Signature, file_signature
from authproxy.keys.signing import SigningKeys
from authproxy.keys.store import LEGACY_VERSION, KeyTable, StoreFile, load_store

log = structlog.stdlib.get_logger(__name__)


class KeyStoreWatcher:
    """Reload the store when its file changes (also when a symlink is swapped)."""

    def __init__(
        self,
        path: Path,
        on_table: Callable[[KeyTable], None],
        interval: float,
        *,
        signing: Callable[[], SigningKeys] | None = None,
        on_signing: Callable[[SigningKeys], None] | None = None,
        signing_path: Path | None = None,
    ) -> None:
        self.path = path
        self.interval = interval
        self.reloads = 0
        self.failures = 0
        self._on_table = on_table
        self._on_signing = on_signing
        self._seen: Signature | None = None
        self._lock = asyncio.Lock()
        self._signing = signing
        self._signing_path = signing_path
        self._signing_seen: Signature | None = None

    def _put_signing(self, keys: SigningKeys) -> None:
        if self._on_signing is not None:
            self._on_signing(keys)

    def load_initial(self) -> KeyTable:
        """Load the store synchronously at start-up.

        Raises:
            KeyStoreError: the store cannot be read or parsed.
        """
        self._seen = file_signature(self.path)
        table = self._checked(load_store(self.path))
        self._on_table(table)
        if self._signing is not None:
            try:
                self._put_signing(self._signing())
            except KeyStoreError as err:
                # JWTs stay unusable until the keys load; API keys still work.
                log.error("signing_keys_unavailable", error=str(err))
            if self._signing_path is not None:
                self._signing_seen = file_signature(self._signing_path)
        return table

    async def reload(self, *, force: bool = False) -> bool:
        """Reload if the file changed (or always, with ``force``).

        Returns:
            Whether a new table was put in service.
        """
        async with self._lock:
            signature = file_signature(self.path)
            if not force and signature == self._seen:
                return False
            self._seen = signature
            loop = asyncio.get_running_loop()
            try:
                loaded = await loop.run_in_executor(None, load_store, self.path)
            except KeyStoreError as err:
                self.failures += 1
                log.error("keystore_reload_failed", path=str(self.path), error=str(err))
                return False
            table = self._checked(loaded)
            self._on_table(table)
            self.reloads += 1
            log.info("keystore_reloaded", path=str(self.path), keys=len(table.records))
            return True

    def _checked(self, loaded: StoreFile) -> KeyTable:
        if loaded.version == LEGACY_VERSION:
            # Such a file has no completeness mark, so a truncated copy of it
            # would load with keys missing.
            log.warning(
                "keystore_format_outdated",
                path=str(self.path),
                version=loaded.version,
                fix="any key change, or `authproxy keys check --rewrite`, "
                "rewrites it with a completeness mark",
            )
        return loaded.table

    async def reload_signing(self, *, force: bool = False) -> None:
        """Reload the JWT signing keys if their file changed (or with ``force``)."""
        if self._signing is None:
            return
        if self._signing_path is not None:
            signature = file_signature(self._signing_path)
            if not force and signature == self._signing_seen:
                return
            self._signing_seen = signature
        elif not force:
            return
        loop = asyncio.get_running_loop()
        try:
            keys = await loop.run_in_executor(None, self._signing)
        except KeyStoreError as err:
            log.error("signing_keys_reload_failed", error=str(err))
            return
        self._put_signing(keys)
        log.info("signing_keys_reloaded", kids=[k.kid for k in keys.keys])

    async def run(self) -> None:
        """Poll forever; cancel the task to stop."""
        while True:
            await asyncio.sleep(self.interval)
            await self.reload()
            await self.reload_signing()
