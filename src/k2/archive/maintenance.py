"""Daily archive maintenance: compaction, snapshot expiry, orphan-file removal.

pyiceberg's only built-in maintenance is snapshot expiry (metadata only); compaction and orphan
removal are written here. Each runs under the table's lock, so no offload commits meanwhile.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pyarrow.compute as pc
from pyarrow import fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table

from k2.archive.lake import Lake, watermark
from k2.archive.marks import snapshot_text
from k2.archive.tables import (
    SILVER_SEQUENCE,
    SILVER_WRITER_MARKS,
    WATERMARK,
    WRITER_MARKS,
    ArchiveTable,
    partition_ordinal,
    time_range,
)
from k2.errors import ArchiveError
from k2.hotstore.schema import TIMEFRAME_BY_NAME
from k2.settings import ArchiveSettings

log = logging.getLogger(__name__)


@dataclass
class MaintenanceResult:
    table: str
    files_before: int = 0
    files_after: int = 0
    partitions_compacted: int = 0
    rows_rewritten: int = 0
    snapshots_expired: int = 0
    orphans_removed: int = 0
    orphan_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _partition_range(spec: ArchiveTable, value: int) -> tuple[int, int]:
    """Epoch seconds [start, end) of a day or month partition value (days / months since 1970)."""
    if not spec.monthly:
        return value * 86400, (value + 1) * 86400
    year, month = divmod(value, 12)
    start = dt.datetime(1970 + year, month + 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(1970 + (value + 1) // 12, (value + 1) % 12 + 1, 1, tzinfo=dt.UTC)
    return int(start.timestamp()), int(end.timestamp())


def _bounds_s(field_id: int, f: dict[str, Any]) -> tuple[float, float] | None:
    """A data file's lowest and highest value of column `field_id` in epoch seconds, from its
    column statistics (microsecond timestamps); None without them."""
    low, high = dict(f["lower_bounds"] or []), dict(f["upper_bounds"] or [])
    if field_id not in low or field_id not in high:
        return None
    lowest, highest = (int.from_bytes(b[field_id], "little", signed=True) for b in (low, high))
    return lowest / 1e6, highest / 1e6


def candle_horizon(table: Table, spec: ArchiveTable, settings: ArchiveSettings) -> int:
    """Epoch seconds before which offloads no longer replace this candle table's windows.

    Each offload replaces the windows from its last watermark minus the lookback on, and its
    overwrite rewrites every file holding rows in that range. A compaction that merged those
    windows into the partition's big file therefore had the next offload read and rewrite the
    whole partition: a month of 1m candles, after every maintenance run. Compaction stops here.
    (A backfill of older windows still rewrites the file holding them: rarely, and rightly.)"""
    assert spec.timeframe is not None
    mark = watermark(table)
    if mark is None:
        return 0
    step = TIMEFRAME_BY_NAME[spec.timeframe].seconds
    return (int(mark) - settings.candle_lookback_minutes * 60) // step * step


def _settled(
    table: Table, spec: ArchiveTable, members: list[dict[str, Any]], end: int, horizon: int
) -> tuple[list[dict[str, Any]], int]:
    """The files wholly before a cut at or below min(end, horizon) that no file straddles, and
    that cut: rewriting [partition start, cut) then touches those files and no other."""
    field_id = table.schema().find_field(spec.partition_by).field_id
    bounds = []
    for f in members:
        if (b := _bounds_s(field_id, f)) is None:
            return [], 0  # no statistics: leave the partition as it is
        bounds.append(b)
    cut = float(min(end, horizon))
    while straddling := [lo for lo, hi in bounds if lo < cut <= hi]:
        cut = min(straddling)
    return [f for f, (_, hi) in zip(members, bounds, strict=True) if hi < cut], int(cut)


def compact(
    table: Table, spec: ArchiveTable, settings: ArchiveSettings, result: MaintenanceResult
) -> None:
    """Rewrite every partition with two or more small files into target-size files. Candle
    tables: only what lies before `candle_horizon`, so the next offload rewrites nothing big."""
    files = table.inspect.data_files().to_pylist()
    small = settings.small_file_mb * 2**20
    by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for f in files:
        by_partition[partition_ordinal(next(iter(f["partition"].values())))].append(f)
    horizon = candle_horizon(table, spec, settings) if spec.is_candles else None
    # The offload's marks, carried onto the rewrite (readers walk back past it anyway).
    kept = {
        key: text
        for key in (WATERMARK, WRITER_MARKS, SILVER_WRITER_MARKS, SILVER_SEQUENCE)
        if (text := snapshot_text(table, key)) is not None
    }
    for value, in_partition in sorted(by_partition.items()):
        start, end = _partition_range(spec, value)
        members = in_partition
        if horizon is not None:
            members, end = _settled(table, spec, in_partition, end, horizon)
        if len(members) < 2 or not any(m["file_size_in_bytes"] < small for m in members):
            continue
        where = time_range(spec.partition_by, start, end)
        data = table.scan(row_filter=where).to_arrow()
        expected = sum(m["record_count"] for m in members)
        if data.num_rows != expected:  # never rewrite what we did not read whole
            raise ArchiveError(
                f"{spec.name}: partition {value} read {data.num_rows} rows, "
                f"manifests say {expected}"
            )
        data = data.sort_by([(c, "ascending") for c in spec.sort_by])
        props = {"k2.operation": "compaction"} | kept
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            table.overwrite(data, overwrite_filter=where, snapshot_properties=props)
        result.partitions_compacted += 1
        result.rows_rewritten += data.num_rows


def expire(table: Table, settings: ArchiveSettings, result: MaintenanceResult, now: float) -> None:
    """Expire snapshots older than the max age, always keeping the newest `snapshot_min_keep`."""
    snapshots = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
    cutoff_ms = (now - settings.snapshot_max_age_days * 86400) * 1000
    current = table.current_snapshot()
    keep = {s.snapshot_id for s in snapshots[: settings.snapshot_min_keep]}
    if current is not None:
        keep.add(current.snapshot_id)
    doomed = [
        s.snapshot_id for s in snapshots if s.snapshot_id not in keep and s.timestamp_ms < cutoff_ms
    ]
    if doomed:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
        result.snapshots_expired = len(doomed)


def _strip(uri: str) -> str:
    parts = urlsplit(uri)
    return parts.path if parts.scheme in ("", "file") else f"{parts.netloc}{parts.path}"


def referenced_files(table: Table) -> set[str]:
    """Every file a live snapshot or the metadata log needs: data, manifests, lists, metadata."""
    refs = {_strip(table.metadata_location)}
    refs.update(_strip(e.metadata_file) for e in table.metadata.metadata_log)
    for snapshot in table.metadata.snapshots:
        refs.add(_strip(snapshot.manifest_list))
        for manifest in snapshot.manifests(table.io):
            refs.add(_strip(manifest.manifest_path))
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                refs.add(_strip(entry.data_file.file_path))
    return refs


def _filesystem(table: Table) -> tuple[pafs.FileSystem, str]:
    """The table's file system as its FileIO configured it (an S3 endpoint and keys included),
    and the table's root in it."""
    scheme, netloc, path = PyArrowFileIO.parse_location(table.location())
    if isinstance(table.io, PyArrowFileIO):
        return table.io.fs_by_scheme(scheme, netloc), path
    filesystem, root = pafs.FileSystem.from_uri(table.location())
    return filesystem, root


def remove_orphans(
    table: Table, settings: ArchiveSettings, result: MaintenanceResult, now: float
) -> None:
    """Delete files under the table that nothing references and that are older than
    the safety age."""
    filesystem, root = _filesystem(table)
    keep = referenced_files(table)
    cutoff = now - settings.orphan_min_age_hours * 3600
    try:
        listing = filesystem.get_file_info(
            pafs.FileSelector(root, recursive=True, allow_not_found=True)
        )
    except OSError as err:
        raise ArchiveError(f"cannot list {table.location()}: {err}") from err
    for info in listing:
        if info.type != pafs.FileType.File or _strip(info.path) in keep:
            continue
        if info.mtime is not None and info.mtime.timestamp() > cutoff:
            continue  # maybe a commit in flight: only old orphans go
        filesystem.delete_file(info.path)
        result.orphans_removed += 1
        result.orphan_bytes += info.size or 0


def maintain_table(
    lake: Lake, spec: ArchiveTable, settings: ArchiveSettings, now: float | None = None
) -> MaintenanceResult:
    """Compact, expire and clean one table; return what was done."""
    started = time.monotonic()
    now = time.time() if now is None else now
    result = MaintenanceResult(spec.name)
    with lake.locks.hold(spec.name):
        table = lake.table(spec)
        result.files_before = len(table.inspect.data_files())
        compact(table, spec, settings, result)
        table = lake.table(spec)
        expire(table, settings, result, now)
        remove_orphans(lake.table(spec), settings, result, now)
        result.files_after = len(lake.table(spec).inspect.data_files())
    result.seconds = time.monotonic() - started
    log.info(
        "maintenance %s: files %d -> %d (%d partitions compacted), %d snapshots expired, "
        "%d orphans removed (%.1f MB), %.2f s",
        spec.name,
        result.files_before,
        result.files_after,
        result.partitions_compacted,
        result.snapshots_expired,
        result.orphans_removed,
        result.orphan_bytes / 2**20,
        result.seconds,
    )
    return result


def row_count(table: Table) -> int:
    """Rows in the current snapshot, from the manifests (no data read)."""
    files = table.inspect.data_files()
    return int(pc.sum(files.column("record_count")).as_py() or 0) if files.num_rows else 0
