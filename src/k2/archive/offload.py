"""Offload: copy the hot tables to the archive exactly once.

Trade tables (bronze, silver): per writer, rows whose ingest sequence is above the writer's
watermark and at or below its highest visible sequence when the run starts (archive/marks.py),
in chunks of at most `chunk_rows` rows and about `chunk_bytes` bytes (uncompressed, by the table's
average row: a bronze row carries its raw JSON and weighs several silver rows, and a chunk is held
in memory whole while it is written). Each chunk is one Iceberg commit that carries the new marks in
the same snapshot's summary, so data and marks land together or not at all, and a rerun after a
crash anywhere resumes exactly.

Candle tables: windows that have closed, re-archived over a lookback and wherever silver rows
added since the last run fall (so a late trade corrects a candle already archived, however late).
Each commit replaces a range of windows with what hot holds for it (an upsert keyed by exchange,
canonical symbol and window start); a range never starts before the first window the hot store
holds, so the archive never loses a candle hot has not got.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.table import Table

from k2.archive import marks
from k2.archive.lake import Lake, watermark
from k2.archive.tables import (
    SILVER_SEQUENCE,
    SILVER_WRITER_MARKS,
    WATERMARK,
    WRITER_MARKS,
    ArchiveTable,
    time_range,
)
from k2.hotstore.schema import DATABASE, TIMEFRAME_BY_NAME
from k2.hotstore.store import HotStore

log = logging.getLogger(__name__)

# Called at each step with (table, point): fault-injection tests stop the offload there.
Checkpoint = Callable[[str, str], None]
POINTS = ("before_read", "before_write", "files_written", "committed")


@dataclass
class OffloadResult:
    table: str
    rows: int = 0
    commits: int = 0
    watermark_before: int | None = None
    watermark_after: int | None = None
    newest_event_ns: int = 0  # newest event (trades) or window end (candles) the archive now holds
    seconds: float = 0.0


def _no_checkpoint(table: str, point: str) -> None:
    return None


# A chunk's rows, uncompressed, at most about this (setting archive.chunk_bytes): a chunk is read
# from the store as one Parquet blob and written as one file per day.
DEFAULT_CHUNK_BYTES = 64 * 2**20


def _row_bytes(store: HotStore, table: str) -> int:
    """The table's average row, uncompressed, in bytes (1 for a table with no parts yet)."""
    ((size, rows),) = store.rows(
        "SELECT sum(data_uncompressed_bytes), sum(rows) FROM system.parts "
        "WHERE database = {db:String} AND table = {t:String} AND active",
        {"db": DATABASE, "t": table},
    )
    return max(1, int(size or 0) // int(rows)) if rows else 1


def offload_table(
    store: HotStore,
    lake: Lake,
    spec: ArchiveTable,
    *,
    chunk_rows: int,
    lookback_minutes: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    checkpoint: Checkpoint = _no_checkpoint,
    now: Callable[[], float] = time.time,
) -> OffloadResult:
    """Offload one table; return what was archived."""
    started = time.monotonic()
    with lake.locks.hold(spec.name):
        table = lake.table(spec)
        result = OffloadResult(spec.name, watermark_before=watermark(table))
        if spec.is_candles:
            _candles(
                store, table, spec, result, chunk_rows, lookback_minutes * 60, checkpoint, now()
            )
        else:
            rows = min(chunk_rows, max(1, chunk_bytes // _row_bytes(store, spec.name)))
            _rows(store, table, spec, result, rows, checkpoint)
    result.seconds = time.monotonic() - started
    if result.commits:
        log.info(
            "offload %s: %d rows in %d commits, watermark %s -> %s (%.2f s)",
            spec.name,
            result.rows,
            result.commits,
            result.watermark_before,
            result.watermark_after,
            result.seconds,
        )
    return result


def _commit(
    table: Table,
    spec: ArchiveTable,
    data: pa.Table,
    props: dict[str, str],
    checkpoint: Checkpoint,
    window: tuple[int, int],
) -> None:
    """Replace the windows in [start, end) with `data` (candles), in one commit with `props`."""
    checkpoint(spec.name, "before_write")
    tx = table.transaction()
    start, end = window
    where = time_range(spec.partition_by, start, end)
    with warnings.catch_warnings():  # a range with nothing archived yet is the usual case
        warnings.filterwarnings("ignore", "Delete operation did not match any records")
        tx.overwrite(data, overwrite_filter=where, snapshot_properties=props)
    checkpoint(spec.name, "files_written")  # data files exist; nothing refers to them yet
    tx.commit_transaction()
    checkpoint(spec.name, "committed")


# ClickHouse writes the trade tables' Parquet itself (C++, both cores, no Python objects per row).
# No Parquet bloom filters: ClickHouse writes one per column by default, which doubled the files
# and cost a third of the encoding time (measured: 581 -> 393 ms and 16.1 -> 7.7 MB per million
# silver rows); Iceberg's manifests already carry per-file column bounds for pruning. zstd at
# level 1, the tables' own `write.parquet.compression-level` (lake.py), which compaction uses too.
# Row groups of at most 64 MiB: the default, 512 MiB, let a million bronze rows with their raw
# JSON sit in memory at once (`k2 up` under a firehose peaked at 1.55 GB during an offload,
# 1.2-1.3 GB with this). Data pages of 128 KiB, not 1 MiB: the page index then lets a read of one
# symbol-hour skip most of a row group (bench/query.py's archive reads: 20 -> 12.7 ms p50), for
# files 18 % larger until compaction rewrites the day (219 -> 258 MB for 10 million silver rows).
_PARQUET = (
    " SETTINGS output_format_parquet_compression_method = 'zstd', "
    "output_format_compression_level = 1, "
    "output_format_parquet_string_as_string = 1, "
    "output_format_parquet_row_group_size = 1048576, "
    "output_format_parquet_write_bloom_filter = 0, "
    "output_format_parquet_row_group_size_bytes = 67108864, "
    "output_format_parquet_data_page_size = 131072"
)


def _chunk_ends(
    store: HotStore, spec: ArchiveTable, base: marks.Marks, highs: marks.Marks, chunk_rows: int
) -> list[int]:
    """Ingest sequences that cut the rows between the marks into chunks of about `chunk_rows`
    (a cut applies to every writer: chunk i holds each writer's rows up to cut i)."""
    where = marks.between(base, highs)
    top = max(highs.values())
    ((count,),) = store.rows(f"SELECT count() FROM {DATABASE}.{spec.name} WHERE {where}")
    pieces = -(-int(count) // chunk_rows)
    if pieces <= 1:
        return [top] if count else []
    levels = ", ".join(f"{i / pieces:.9f}" for i in range(1, pieces))
    ((cuts,),) = store.rows(
        f"SELECT quantilesExactLow({levels})(ingest_seq) FROM {DATABASE}.{spec.name} WHERE {where}"
    )
    return [*sorted({int(c) for c in cuts if c < top}), top]


def _rows(
    store: HotStore,
    table: Table,
    spec: ArchiveTable,
    result: OffloadResult,
    chunk_rows: int,
    checkpoint: Checkpoint,
) -> None:
    highs = marks.highs(store, spec.name)
    # A writer no longer in hot has nothing left to archive: its mark goes (it never writes again,
    # and one that did would have all its rows in hot above 0).
    archived = marks.read(table, WRITER_MARKS, WATERMARK)
    base = {w: archived.get(w, 0) for w in highs}
    pending = any(h > base[w] for w, h in highs.items())
    for cut in _chunk_ends(store, spec, base, highs, chunk_rows) if pending else []:
        checkpoint(spec.name, "before_read")
        upper = {w: max(base[w], min(h, cut)) for w, h in highs.items()}
        where = marks.between(base, upper)
        days = store.rows(
            f"SELECT toUInt32(toDate(ts_event)) d, count(), max(toUnixTimestamp64Nano(ts_event)) "
            f"FROM {DATABASE}.{spec.name} WHERE {where} GROUP BY d ORDER BY d"
        )
        checkpoint(spec.name, "before_write")
        files = []
        for day, _count, _newest in days:  # one file per day partition: its partition value
            blob = store.query_bytes(spec.select_range(where, day) + _PARQUET, "Parquet")
            date = dt.date(1970, 1, 1) + dt.timedelta(days=day)
            path = (
                f"{table.location()}/data/{spec.partition_by}_day={date.isoformat()}/"
                f"{uuid.uuid4().hex}.parquet"
            )
            with table.io.new_output(path).create() as out:
                out.write(blob)
            files.append(path)
        checkpoint(spec.name, "files_written")  # data files exist; nothing refers to them yet
        rows = sum(n for _d, n, _t in days)
        newest = max(upper.values())
        tx = table.transaction()
        tx.add_files(
            files,
            snapshot_properties={
                WRITER_MARKS: marks.encode(upper),
                WATERMARK: str(newest),
                "k2.rows": str(rows),
            },
            check_duplicate_files=False,
        )
        tx.commit_transaction()
        checkpoint(spec.name, "committed")
        base = upper
        result.rows += rows
        result.commits += 1
        result.watermark_after = newest
        result.newest_event_ns = max(result.newest_event_ns, *(t for _d, _n, t in days))


def _ranges(spans: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Merge overlapping or touching [start, end) spans, and neighbours while the piece they make
    stays within `limit`; then cut what is longer into pieces <= `limit` long.

    Joining neighbours rewrites the windows between them with what hot holds, the same as the
    archive holds. A backfill that touched a window every few minutes was one commit per window
    (60 commits, 20 s, for two hours of 1m windows); now it is one."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and (start <= merged[-1][1] or max(end, merged[-1][1]) - merged[-1][0] <= limit):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, min(a + limit, end)) for start, end in merged for a in range(start, end, limit)]


def _candles(
    store: HotStore,
    table: Table,
    spec: ArchiveTable,
    result: OffloadResult,
    chunk_rows: int,
    lookback_s: int,
    checkpoint: Checkpoint,
    now: float,
) -> None:
    """Archive closed windows: the lookback range, plus every closed window silver rows added since
    the last run touched (a backfill after a long outage changes candles hours old)."""
    assert spec.timeframe is not None
    tf = TIMEFRAME_BY_NAME[spec.timeframe]
    step = tf.seconds
    closed = int(now) // step * step  # windows starting before this have closed
    ((hot_start, markets),) = store.rows(
        "SELECT toUnixTimestamp(min(window_start)), uniqExact(exchange, canonical_symbol) "
        f"FROM {DATABASE}.{spec.name}"
    )
    if not markets:
        return
    seen = marks.read(table, SILVER_WRITER_MARKS, SILVER_SEQUENCE)
    highs = marks.highs(store, "silver_trades")
    spans = []
    start = hot_start if result.watermark_before is None else result.watermark_before - lookback_s
    start = max(start, hot_start) // step * step  # never before what hot holds: hot is the truth
    if start < closed:
        spans.append((start, closed))
    if result.watermark_before is not None and any(h > seen.get(w, 0) for w, h in highs.items()):
        for (window,) in store.rows(
            "SELECT DISTINCT toUnixTimestamp("
            f"toStartOfInterval(toDateTime(ts_event, 'UTC'), INTERVAL {tf.interval})) "
            f"FROM {DATABASE}.silver_trades WHERE {marks.between(seen, highs)}"
        ):
            if hot_start <= window < closed:
                spans.append((window, window + step))
    # windows per commit, bounded like rows
    pieces = _ranges(spans, max(1, chunk_rows // markets) * step)
    for i, (start, end) in enumerate(pieces):
        checkpoint(spec.name, "before_read")
        data = store.query_arrow(spec.select_windows(start, end))
        # Only the last commit moves the marks: a crash before it makes the rerun redo everything
        # (each commit replaces whole windows with what hot holds, so redoing is harmless).
        last = i == len(pieces) - 1
        props = (
            {
                WATERMARK: str(closed),
                SILVER_WRITER_MARKS: marks.encode(highs),
                SILVER_SEQUENCE: str(max(highs.values(), default=0)),
            }
            if last
            else {}
        )
        _commit(
            table, spec, data, props | {"k2.rows": str(data.num_rows)}, checkpoint, (start, end)
        )
        result.rows += data.num_rows
        result.commits += 1
        result.newest_event_ns = max(result.newest_event_ns, end * 1_000_000_000)
    if pieces:
        result.watermark_after = closed
