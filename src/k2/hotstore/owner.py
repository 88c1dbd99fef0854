"""Own a data directory's hot store: lock, schema, crash repair on open; clean marker on close.

Whoever writes to the store (`k2 up`, or `k2 offload` on a stopped data directory) opens it here,
so a store left inconsistent by a crash is always repaired before anything reads or writes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from k2.hotstore import migrate, recovery
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.store import DataDirLock
from k2.settings import HotStoreSettings

HOT_DIR = "hot"


class OwnedStore:
    """A hot store this process owns until `close()`."""

    def __init__(self, data_dir: Path, settings: HotStoreSettings, role: str) -> None:
        self.lock = DataDirLock(data_dir)
        self.lock.acquire(role)
        hot = data_dir / HOT_DIR
        try:
            existed = hot.exists()
            self.store = ClickHouseStore.at(hot)
            migrate.apply(self.store, settings)
            if not recovery.was_clean(hot) and existed:
                recovery.recover(self.store)
        except BaseException:
            self.lock.release()
            raise
        self._hot = hot

    def close(self, clean: bool = True) -> None:
        """Close the store; `clean` records that every write finished (no repair next time)."""
        try:
            self.store.close()
            if clean:
                recovery.mark_clean(self._hot)
        finally:
            self.lock.release()


@contextlib.contextmanager
def owned(data_dir: Path, settings: HotStoreSettings, role: str) -> Iterator[OwnedStore]:
    owner = OwnedStore(data_dir, settings, role)
    clean = False
    try:
        yield owner
        clean = True
    finally:
        owner.close(clean)
