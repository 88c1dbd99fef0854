"""Own a data directory's hot store: lock, schema, crash repair on open; clean marker on close.

Whoever writes to the store (`k2 up`, or `k2 offload` on a stopped data directory) opens it here,
so a store left inconsistent by a crash is always repaired before anything reads or writes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from k2.hotstore import migrate, recovery
from k2.hotstore.clickhouse import open_store, store_url
from k2.hotstore.store import DataDirLock
from k2.settings import HotStoreSettings

HOT_DIR = "hot"


class OwnedStore:
    """A hot store this process owns until `close()`."""

    def __init__(
        self, data_dir: Path, settings: HotStoreSettings, role: str, repair: bool = True
    ) -> None:
        """`repair` False: no crash repair from silver (k2 ingest, whose bus replays complete
        what a crash cut short)."""
        self.lock = DataDirLock(data_dir)
        self.lock.acquire(role)
        hot = data_dir / HOT_DIR
        try:
            existed = hot.exists()
            self.store = open_store(settings, data_dir)
            hot.mkdir(exist_ok=True)  # the clean-stop marker's place, whatever the engine
            migrate.apply(self.store, settings)
            # A ClickHouse server has other writers (ingest workers), whose partial inserts their
            # retries complete (tokens): only an embedded store is repaired from silver.
            embedded = store_url(settings, data_dir).startswith("chdb:")
            if repair and embedded and existed and not recovery.was_clean(hot):
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
