"""The writer: the feeds' sink in the embedded shape. Batches by size and time, one insert per table.

Every received trade becomes a bronze row (duplicates flagged). A batch is one insert into the
Null table `ingest_trades`; materialized views inside that insert fan it out to the bronze tables,
then silver, then the candles. The ingest sequence is a hybrid clock,
max(previous + 1, now in µs): monotonic per table and never reused, even after a restart on a
store whose tables TTL emptied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from k2.errors import K2Error
from k2.hotstore.chdb_store import ChdbStore
from k2.hotstore.schema import DATABASE, INGEST_INSERT, INGEST_TABLE, TS, bronze_table
from k2.records import BUY, Gap, Reject, Trade
from k2.settings import WriterSettings

if TYPE_CHECKING:
    from k2.observe.metrics import PipelineMetrics

log = logging.getLogger(__name__)
RETRY_DELAY_S = 1.0


@dataclass
class WriterStats:
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written by this process
    batches: int = 0
    last_batch_rows: int = 0
    pending: int = 0  # rows accepted from feeds, not yet written
    backpressure_s: float = 0.0  # feed time spent waiting for the writer
    flush_failures: int = 0
    insert_seconds: dict[str, float] = field(default_factory=dict)  # table -> last insert duration
    last_flush_at: float = 0.0  # wall clock

    def note_insert(self, table: str, rows: int, seconds: float) -> None:
        self.rows[table] = self.rows.get(table, 0) + rows
        self.insert_seconds[table] = seconds


# Called after each batch is committed (visible in silver) with the batch as inserted (the Arrow
# table of INGEST_INSERT: ts_event, ts_recv, duplicate, ...) and the commit time (UTC ns).
CommitListener = Callable[[pa.Table, int], None]


def next_sequence(previous: int) -> int:
    """Return the next ingest sequence after `previous`: max(previous + 1, now in µs)."""
    return max(previous + 1, time.time_ns() // 1000)


@dataclass
class _Batch:
    chunks: list[tuple[Sequence[Trade], set[int] | None, str]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rows: int = 0


def _per_chunk(values: list[str], counts: list[int]) -> pa.DictionaryArray:
    """A dictionary column from one value per chunk: no per-row Python work."""
    codes: dict[str, int] = {}
    index = np.fromiter((codes.setdefault(v, len(codes)) for v in values), np.int32, len(values))
    return pa.DictionaryArray.from_arrays(pa.array(np.repeat(index, counts)), pa.array(list(codes), pa.string()))


def _ingest(trades: list[Trade], chunk_venues: list[str], chunk_conns: list[str], chunk_sizes: list[int],
            dups: list[bool] | None, first_seq: int) -> pa.Table:  # fmt: skip
    """One batch of trades, every venue, as the Arrow table the ingest insert takes.

    Prices and amounts go as their exact decimal text (ClickHouse parses them, outside Python's
    GIL); per-chunk constants (venue, connection) as dictionary columns.
    """
    n = len(trades)
    return pa.Table.from_arrays([
        _per_chunk(chunk_venues, chunk_sizes),  # a chunk comes from one feed: one venue, one connection
        pa.array([t.symbol for t in trades], pa.string()),
        pa.array([t.canonical_symbol for t in trades], pa.string()),
        pa.array([t.trade_id for t in trades], pa.uint64()),
        pa.array([str(t.price) for t in trades], pa.string()),
        pa.array([str(t.amount) for t in trades], pa.string()),
        pa.array([t.venue_side for t in trades], pa.string()),
        pa.array([t.taker_side == BUY for t in trades], pa.bool_()),
        pa.array([t.ts_event for t in trades], TS),
        pa.array([t.ts_recv for t in trades], TS),
        _per_chunk(chunk_conns, chunk_sizes),
        pa.array(dups, pa.bool_()) if dups is not None else pa.array(np.zeros(n, np.bool_)),
        pa.array([t.raw for t in trades], pa.binary()),
        pa.array(np.arange(first_seq, first_seq + n, dtype=np.uint64)),
    ], schema=INGEST_INSERT)  # fmt: skip


# Up to this many rows, an ingest insert runs its materialized views (bronze x3, silver, candles)
# side by side: a small batch's insert is mostly per-part overhead, ~15 ms less in parallel, and
# small batches are where commit latency counts. Bigger batches run them one after another: on
# two cores that is no slower, and it does not hold every view's part buffers at once (~50 MB
# less peak RSS under a firehose). Merging candle states within a block is left to the
# background merges either way.
PARALLEL_VIEWS_MAX_ROWS = 10_000


def _insert_settings(rows: int) -> str:
    parallel = 1 if rows <= PARALLEL_VIEWS_MAX_ROWS else 0
    return f" SETTINGS parallel_view_processing = {parallel}, optimize_on_insert = 0"


def gap_rows(gaps: list[Gap]) -> pa.Table:
    """Gap records as the Arrow table `feed_gaps` takes (the latest version of a gap_id wins)."""
    return pa.table({
        "gap_id": [g.gap_id for g in gaps], "exchange": [g.exchange for g in gaps],
        "symbol": [g.symbol for g in gaps], "kind": [g.kind for g in gaps],
        "first_id": pa.array([g.first_id for g in gaps], pa.uint64()),
        "last_id": pa.array([g.last_id for g in gaps], pa.uint64()),
        "ts_from": pa.array([g.ts_from for g in gaps], TS), "ts_to": pa.array([g.ts_to for g in gaps], TS),
        "detected_at": pa.array([g.detected_at for g in gaps], TS),
        "resolved_at": pa.array([g.resolved_at for g in gaps], TS),
        "outcome": [g.outcome for g in gaps],
        "missing": pa.array([g.missing for g in gaps], pa.uint64()),
        "recovered": pa.array([g.recovered for g in gaps], pa.uint64()),
        "version": pa.array([g.resolved_at or g.detected_at for g in gaps], pa.uint64()),
    })  # fmt: skip


def _rejects(rejects: list[Reject]) -> pa.Table:
    return pa.table({
        "exchange": [r.exchange for r in rejects], "reason": [r.reason for r in rejects],
        "raw": pa.array([r.raw for r in rejects], pa.binary()),
        "ts_recv": pa.array([r.ts_recv for r in rejects], TS), "conn_id": [r.conn_id for r in rejects],
    })  # fmt: skip


class StoreWriter:
    """Implements the feeds' Sink on top of the hot store."""

    def __init__(self, store: ChdbStore, settings: WriterSettings, last_seq: int,
                 metrics: PipelineMetrics | None = None) -> None:  # fmt: skip
        self._store, self._settings = store, settings
        self.metrics = metrics
        self._last_seq = last_seq
        self.stats = WriterStats()
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._closed = False
        self.listeners: list[CommitListener] = []

    # -- Sink -------------------------------------------------------------------------------------
    async def trades(self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str) -> None:
        if not received:
            return
        accepted_ids = None if len(accepted) == len(received) else {id(t) for t in accepted}
        self._batch.chunks.append((received, accepted_ids, conn_id))
        self._batch.rows += len(received)
        self.stats.pending += len(received)
        if self._batch.rows >= self._settings.batch_rows:
            self._wake.set()
        if self.stats.pending >= self._settings.max_pending_rows:
            await self._wait_for_room()

    async def gap(self, gap: Gap) -> None:
        self._batch.gaps.append(gap)

    async def reject(self, reject: Reject) -> None:
        self._batch.rejects.append(reject)

    async def _wait_for_room(self) -> None:
        started = time.monotonic()
        self._wake.set()
        async with self._room:
            await self._room.wait_for(lambda: self.stats.pending < self._settings.max_pending_rows or self._closed)
        self.stats.backpressure_s += time.monotonic() - started

    # -- flushing ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `batch_interval_ms` (sooner when a batch fills) until `stop`.

        The interval counts from the start of the previous flush: a flush that took longer than
        the interval is followed at once by the next, so a batch never waits two intervals.
        """
        interval = self._settings.batch_interval_ms / 1000
        while not stop.is_set():
            started = time.monotonic()
            await self.flush()
            wait = interval - (time.monotonic() - started)
            if wait > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    def _take(self) -> _Batch:
        """Take up to `batch_rows` rows (whole chunks) off the buffer: one insert's worth."""
        buffered = self._batch
        if buffered.rows <= self._settings.batch_rows:
            self._batch = _Batch()
            return buffered
        taken, rows = 0, 0
        while rows < self._settings.batch_rows:
            rows += len(buffered.chunks[taken][0])
            taken += 1
        batch = _Batch(buffered.chunks[:taken], buffered.gaps, buffered.rejects, rows)
        # Gap records wait for the trades before them: they go with the last part of the buffer.
        self._batch = _Batch(buffered.chunks[taken:], [], [], buffered.rows - rows)
        if buffered.gaps or buffered.rejects:
            self._batch.gaps, self._batch.rejects = buffered.gaps, buffered.rejects
            batch.gaps, batch.rejects = [], []
        self._wake.set()  # more is waiting: flush again at once
        return batch

    async def flush(self) -> None:
        """Write one batch of what is buffered (retrying until it is written)."""
        batch = self._take()
        if not (batch.rows or batch.gaps or batch.rejects):
            return
        tables = self._tables(batch)
        # The Arrow tables hold the batch now (~270 bytes a row, against ~650 as Trade objects):
        # let the trades go before the insert rather than after it.
        batch.chunks.clear()
        done: set[str] = set()
        insert_s = 0.0
        while True:
            try:
                insert_s += await asyncio.wrap_future(self._store.submit(self._write, tables, done))
                break
            except K2Error as err:
                # Tables already written stay written (`done`): a retry never inserts them twice.
                self.stats.flush_failures += 1
                log.error("writer: flush of %d rows failed (%s); retrying in %.0f s", batch.rows, err, RETRY_DELAY_S)
                await asyncio.sleep(RETRY_DELAY_S)
        committed = time.time_ns()
        inserted = next((data for name, data in tables if name == INGEST_TABLE), None)
        if self.metrics is not None:
            recv_ns = (pc.cast(inserted.column("ts_recv"), pa.int64()).combine_chunks().to_numpy()
                       if inserted is not None else np.empty(0, np.int64))  # fmt: skip
            self.metrics.batch_committed(batch.rows, insert_s, recv_ns, committed)
        if inserted is not None:
            for listener in self.listeners:
                listener(inserted, committed)
        self.stats.batches += 1
        self.stats.last_batch_rows = batch.rows
        self.stats.last_flush_at = time.time()
        self.stats.pending -= batch.rows
        async with self._room:
            self._room.notify_all()

    def _tables(self, batch: _Batch) -> list[tuple[str, pa.Table]]:
        """Turn a batch into one Arrow table per destination, assigning ingest sequences."""
        trades: list[Trade] = []
        venues: list[str] = []
        conns: list[str] = []
        sizes: list[int] = []
        dups: list[bool] | None = None
        for received, accepted_ids, conn_id in batch.chunks:
            if accepted_ids is not None and dups is None:
                dups = [False] * len(trades)  # the first chunk with a duplicate: track them from here
            if dups is not None:
                dups.extend([False] * len(received) if accepted_ids is None else
                            [id(t) not in accepted_ids for t in received])  # fmt: skip
            trades.extend(received)
            venues.append(received[0].exchange)
            conns.append(conn_id)
            sizes.append(len(received))
        out = []
        if trades:
            first = next_sequence(self._last_seq)
            self._last_seq = first + len(trades) - 1
            out.append((INGEST_TABLE, _ingest(trades, venues, conns, sizes, dups, first)))
        if batch.gaps:
            out.append(("feed_gaps", gap_rows(batch.gaps)))
        if batch.rejects:
            out.append(("rejects", _rejects(batch.rejects)))
        return out

    def _write(self, tables: list[tuple[str, pa.Table]], done: set[str]) -> float:
        # Runs on the store's owner thread: bronze first (silver and candles follow inside each
        # insert), then gap records, so a gap is never marked repaired before its trades exist.
        # Returns the seconds spent inserting.
        total = 0.0
        for name, data in tables:
            if name in done:
                continue
            started = time.perf_counter()
            settings = _insert_settings(data.num_rows) if name == INGEST_TABLE else ""
            self._store.insert_arrow(f"{DATABASE}.{name}{settings}", data)
            elapsed = time.perf_counter() - started
            total += elapsed
            if name == INGEST_TABLE:  # fanned out to the bronze tables, silver and the candles
                counts = pc.value_counts(data.column("exchange").combine_chunks().dictionary_decode())
                for item in counts.to_pylist():
                    self.stats.note_insert(bronze_table(item["values"]), item["counts"], elapsed)
                accepted = data.num_rows - pc.sum(data.column("duplicate")).as_py()
                self.stats.note_insert("silver_trades", accepted, elapsed)
            else:
                self.stats.note_insert(name, data.num_rows, elapsed)
            done.add(name)
        return total

    async def close(self) -> None:
        """Write what is left; call after the feeds have stopped."""
        while self._batch.rows or self._batch.gaps or self._batch.rejects:
            await self.flush()
        self._closed = True
        async with self._room:
            self._room.notify_all()
