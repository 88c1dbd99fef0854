"""The archive's rows read by the hot store's own engine, where that engine can reach the files.

pyiceberg plans the read: which data files of the newest snapshot can hold matching rows (by
partition and by each file's column bounds). Reading them is where the time goes. pyiceberg
decodes every row group the filter cannot rule out, and the files are sorted by symbol, so a
symbol-hour decodes most of a day. ClickHouse's Parquet reader filters on the filter's columns
first and decodes the rest only for rows that pass. Measured on one symbol-hour of a day's files
(5,787 of 1.67 million rows): 16-19 ms through chDB, 86 ms (p50) through pyiceberg's scan.

This applies only when:
- the store is chDB, inside this process;
- every planned file is on the local disk;
- no file carries deletes (K2's archive writes none: its overwrites rewrite whole files).

Otherwise `read` returns None and the caller scans with pyiceberg, as before. A ClickHouse
server, for instance, cannot see files on the API's disk.

Planning a read of trades (`plan`) skips pyiceberg's per-query walk of the manifests, which took
about 10 ms of a symbol-hour's 27: each snapshot's data files and their bounds on the filter's
columns are listed once (`DataFiles`), and a read keeps the files whose bounds can hold a match.
That is a superset of the files with matching rows; the query's WHERE clause is exact.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from k2.hotstore.store import HotStore

if TYPE_CHECKING:
    from pyiceberg.table import DataScan, Table

# file() reads these characters in a path as a glob
_GLOB = re.compile(r"[*?{}\[\]]")
# files per query: each is one SELECT of a UNION ALL, bounded well inside max_query_size
FILES_PER_QUERY = 200


# snapshots whose files are kept listed (a few tables, and a snapshot or two of each in use)
SNAPSHOTS_KEPT = 16


def local_paths(scan: DataScan) -> list[str] | None:
    """The planned files' paths, or None where the engine cannot read them all as they are."""
    files = _local_files(scan)
    return None if files is None else [path for path, _ in files]


def _local_files(scan: DataScan) -> list[tuple[str, Any]] | None:
    """The planned data files with their local paths, or None where the engine cannot read them
    all as they are."""
    files = []
    for task in scan.plan_files():
        path = _local(task.file.file_path)
        if task.delete_files or path is None:
            return None
        files.append((path, task.file))
    return files


def _local(path: str) -> str | None:
    """A data file's path as file() reads it, or None where file() cannot."""
    if not path.startswith(("file:///", "/")):
        return None
    path = path.removeprefix("file://")
    return None if _GLOB.search(path) else path


@dataclass(frozen=True)
class DataFile:
    """One data file: its local path and its bounds on some columns (absent: unknown)."""

    path: str
    lower: dict[str, Any]
    upper: dict[str, Any]

    def may_hold(
        self, equal: dict[str, Any], ranges: dict[str, tuple[int | None, int | None]]
    ) -> bool:
        """Can this file hold a row with these values, and these columns in [start, end)?"""
        for column, value in equal.items():
            lo, hi = self.lower.get(column), self.upper.get(column)
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                return False
        for column, (start, end) in ranges.items():
            lo, hi = self.lower.get(column), self.upper.get(column)
            if (start is not None and hi is not None and hi < start) or (
                end is not None and lo is not None and lo >= end
            ):
                return False
        return True


class DataFiles:
    """Each snapshot's data files with their bounds on the given columns, listed once per snapshot
    (a snapshot never changes) and kept for the newest SNAPSHOTS_KEPT snapshots read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[tuple[str, int, tuple[str, ...]], list[DataFile] | None] = (
            OrderedDict()
        )

    def of(self, table: Table, columns: Sequence[str]) -> list[DataFile] | None:
        """The current snapshot's files, or None where the engine cannot read them all as they
        are (not on this disk, or carrying deletes)."""
        snapshot = table.current_snapshot()
        if snapshot is None:
            return []
        key = (str(table.metadata.table_uuid), snapshot.snapshot_id, tuple(columns))
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        files = _list(table, snapshot.snapshot_id, columns)
        with self._lock:
            self._kept[key] = files
            while len(self._kept) > SNAPSHOTS_KEPT:
                self._kept.popitem(last=False)
        return files


def _list(table: Table, snapshot_id: int, columns: Sequence[str]) -> list[DataFile] | None:
    from pyiceberg.conversions import from_bytes

    fields = [table.schema().find_field(c) for c in columns]
    listed = _local_files(table.scan(snapshot_id=snapshot_id))
    if listed is None:
        return None
    files = []
    for path, data_file in listed:
        bounds: list[dict[str, Any]] = [{}, {}]
        for found, side in zip(
            bounds, (data_file.lower_bounds, data_file.upper_bounds), strict=True
        ):
            for field in fields:
                raw = (side or {}).get(field.field_id)
                if raw is not None:
                    found[field.name] = from_bytes(field.field_type, raw)  # type: ignore[arg-type]
        files.append(DataFile(path, *bounds))
    return files


FILES = DataFiles()


def plan(
    store: HotStore | None,
    table: Table,
    equal: dict[str, Any],
    ranges: dict[str, tuple[int | None, int | None]],
) -> list[str] | None:
    """The local files of the table's current snapshot that can hold rows with the `equal` values
    and the `ranges` (integer columns, [start, end)); None where `read_files` does not apply."""
    if store is None or not getattr(store, "embedded", False):
        return None
    files = FILES.of(table, [*equal, *ranges])
    if files is None:
        return None
    return [f.path for f in files if f.may_hold(equal, ranges)]


def read(
    store: HotStore | None,
    scan: DataScan,
    columns: list[str],
    where: str,
    params: dict[str, Any],
    group_by: str | None = None,
) -> pa.Table | None:
    """`columns` of the rows matching `where` (an SQL condition over the files' columns, with
    `params`) in the files `scan` plans; None where this reader does not apply. With `group_by`,
    `columns` may hold aggregates: they come per file, for the caller to combine."""
    if store is None or not getattr(store, "embedded", False):
        return None
    paths = local_paths(scan)
    if paths is None:
        return None
    return read_files(store, paths, columns, where, params, group_by)


def read_files(
    store: HotStore,
    paths: list[str],
    columns: list[str],
    where: str,
    params: dict[str, Any],
    group_by: str | None = None,
) -> pa.Table:
    """`read`, on files already planned (local, without deletes)."""
    select = ", ".join(columns)
    parts: list[pa.Table] = []
    for first in range(0, len(paths), FILES_PER_QUERY):
        group = paths[first : first + FILES_PER_QUERY]
        grouped = f" GROUP BY {group_by}" if group_by else ""
        sql = " UNION ALL ".join(
            f"SELECT {select} FROM file({{file_{i}:String}}, 'Parquet') WHERE {where}{grouped}"
            for i in range(len(group))
        )
        files = {f"file_{i}": path for i, path in enumerate(group)}
        parts.append(store.query_arrow(sql, params | files))
    if not parts:
        return pa.table({c: pa.array([], pa.null()) for c in columns})
    return pa.concat_tables(parts, promote_options="permissive")
