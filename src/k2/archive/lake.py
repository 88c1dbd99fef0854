"""The Iceberg archive: catalog and warehouse from settings, the tables, watermarks, locks.

Embedded: SQL catalog on SQLite and a warehouse directory under the data directory. The catalog
URI and warehouse are settings, so the same code writes to a PostgreSQL catalog and S3.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import Table

from k2.archive.marks import snapshot_text
from k2.archive.tables import NAMESPACE, WATERMARK, ArchiveTable
from k2.errors import ArchiveError
from k2.settings import ArchiveSettings

log = logging.getLogger(__name__)
LAKE_DIR = "lake"
TABLE_PROPERTIES = {
    "write.parquet.compression-codec": "zstd",
    "write.parquet.compression-level": "1",
    # Small dictionary pages: symbols and sides stay dictionary-encoded; prices, times and ids
    # (nearly all distinct) fall back to plain encoding at once instead of after 2 MiB of work.
    "write.parquet.dict-size-bytes": "65536",
    "write.metadata.delete-after-commit.enabled": "true",  # bound metadata.json growth
    "write.metadata.previous-versions-max": "20",
    "commit.manifest-merge.enabled": "true",  # bound manifest growth
}


def catalog_uri(settings: ArchiveSettings, data_dir: Path) -> str:
    if settings.catalog_uri is not None:
        return settings.catalog_uri.get_secret_value()
    return f"sqlite:///{(data_dir / LAKE_DIR / 'catalog.db').resolve()}"


def warehouse(settings: ArchiveSettings, data_dir: Path) -> str:
    return settings.warehouse or f"file://{(data_dir / LAKE_DIR / 'warehouse').resolve()}"


def s3_properties(settings: ArchiveSettings) -> dict[str, str]:
    """pyiceberg's FileIO properties for an s3:// warehouse: the endpoint, the region and the
    keys, all explicit. Without a region pyarrow asks AWS for one, and without keys it probes the
    EC2 metadata address; off AWS both stall, so neither may happen (the metadata lookup is
    switched off for the whole process)."""
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    s3, given = settings.s3, settings.catalog_properties
    props = {
        "s3.region": s3.region,
        "s3.force-virtual-addressing": "false" if s3.path_style else "true",
    }
    for prop, key in (
        ("s3.access-key-id", "access_key_id"),
        ("s3.secret-access-key", "secret_access_key"),
    ):
        if prop not in given:  # archive.catalog_properties may carry them (as before [s3])
            props[prop] = s3.key(key)
    if s3.endpoint:
        props["s3.endpoint"] = s3.endpoint
    return props


def snapshot_property(table: Table, key: str) -> int | None:
    """Return integer property `key` from the newest snapshot that carries it (marks.snapshot_text:
    a snapshot without it, one pyiceberg or an intermediate K2 commit made, never hides it)."""
    value = snapshot_text(table, key)
    return int(value) if value is not None else None


def watermark(table: Table) -> int | None:
    """Return the archive's watermark: ingest sequence (trades) or closed-window end (candles)."""
    return snapshot_property(table, WATERMARK)


class TableLocks:
    """One writer per archive table at a time, across threads and processes.

    Offload and compaction both rewrite a table; an overwrite that raced an append could drop the
    appended rows. In process: a lock per table. Across processes: a PostgreSQL advisory lock when
    the catalog is PostgreSQL (every worker of the cluster shares it), else a file lock next to
    the catalog.
    """

    def __init__(self, uri: str, lock_dir: Path) -> None:
        self._uri = uri
        self._dir = lock_dir
        self._local: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._engine = (
            sqlalchemy.create_engine(uri, pool_size=2) if uri.startswith("postgresql") else None
        )

    @contextlib.contextmanager
    def hold(self, name: str, timeout: float = 600.0) -> Iterator[None]:
        with self._guard:
            local = self._local.setdefault(name, threading.Lock())
        if not local.acquire(timeout=timeout):
            raise ArchiveError(f"{name}: another writer held the table for {timeout:.0f} s")
        try:
            with self._cross_process(name, timeout):
                yield
        finally:
            local.release()

    @contextlib.contextmanager
    def try_hold(self, name: str) -> Iterator[bool]:
        """Hold `name` if nobody else does; yield whether it is held (never waits)."""
        with self._guard:
            local = self._local.setdefault(name, threading.Lock())
        if not local.acquire(blocking=False):
            yield False
            return
        try:
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(self._cross_process(name, timeout=0))
                except ArchiveError:  # another process holds it (only this; not the body's errors)
                    yield False
                    return
                yield True
        finally:
            local.release()

    @contextlib.contextmanager
    def _cross_process(self, name: str, timeout: float) -> Iterator[None]:
        if self._engine is not None:
            key = int.from_bytes(
                hashlib.sha256(f"k2:{name}".encode()).digest()[:8], "big", signed=True
            )
            with self._engine.connect() as conn:
                deadline = time.monotonic() + timeout
                while not conn.execute(
                    sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}
                ).scalar():
                    if time.monotonic() > deadline:
                        raise ArchiveError(
                            f"{name}: another process held the table for {timeout:.0f} s"
                        )
                    time.sleep(0.2)
                try:
                    yield
                finally:
                    conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        with (self._dir / f"{name}.lock").open("a") as f:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ArchiveError(
                            f"{name}: another process held the table for {timeout:.0f} s"
                        ) from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


class Lake:
    """The archive's catalog and tables."""

    def __init__(self, settings: ArchiveSettings, data_dir: Path) -> None:
        self.settings = settings
        self.uri = catalog_uri(settings, data_dir)
        self.warehouse = warehouse(settings, data_dir)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if self.warehouse.startswith("file://"):
            Path(self.warehouse.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        props: dict[str, Any] = {
            "uri": self.uri,
            "warehouse": self.warehouse,
            **(s3_properties(settings) if self.warehouse.startswith("s3://") else {}),
            **settings.catalog_properties,
        }
        try:
            self.catalog: Catalog = SqlCatalog("k2", **props)
        except sqlalchemy.exc.SQLAlchemyError as err:
            raise ArchiveError(f"cannot open the Iceberg catalog: {err}") from err
        self.locks = TableLocks(self.uri, data_dir / LAKE_DIR / "locks")
        self._tables: dict[str, Table] = {}

    def table(self, spec: ArchiveTable) -> Table:
        """Return the table, creating it (and the namespace) on first use; always freshly loaded."""
        try:
            return self.catalog.load_table(spec.identifier)
        except NoSuchTableError:
            pass
        with contextlib.suppress(NamespaceAlreadyExistsError):
            self.catalog.create_namespace(NAMESPACE)
        props = TABLE_PROPERTIES | {
            "write.target-file-size-bytes": str(self.settings.target_file_mb * 2**20)
        }
        try:
            table = self.catalog.create_table(
                spec.identifier,
                spec.schema,
                partition_spec=spec.partition_spec(),
                sort_order=spec.sort_order(),
                properties=props,
            )
            log.info("archive: created %s", spec.identifier)
            return table
        except TableAlreadyExistsError:  # created by another process just now
            return self.catalog.load_table(spec.identifier)

    def close(self) -> None:
        engine = getattr(self.catalog, "engine", None)
        if engine is not None:
            engine.dispose()
