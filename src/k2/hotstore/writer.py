"""The writer: the feeds' sink in the embedded shape. Batches by size and time, one insert
per table.

Every received trade becomes a bronze row (duplicates flagged). A batch is one insert into the
Null table `ingest_trades`; materialized views inside that insert fan it out to the bronze tables,
then silver, then the candles. The ingest sequence is a hybrid clock,
max(previous + 1, now in µs), and each row names the writer that numbered it (`writer_id`): it
is monotonic per writer and never reused, even after a restart on a store whose tables TTL
emptied. Several writers may fill one store (`k2 ingest` processes); the offload keeps a
watermark per writer (archive/offload.py), since one writer's rows may commit after another's
higher-numbered ones.

Two kinds of failure, told apart by the store's error (clickhouse.classify):

- the store is unavailable (down, disk full, too many parts): nothing is wrong with the rows; the
  batch waits and is retried with backoff, and `stats.store_down_since` says so (a metric, an
  alert and a `k2 health` FAIL) until an insert succeeds;
- the store refuses rows (a value it cannot hold): the batch is split in halves, again and again,
  until the refused rows stand alone; they go to rejects with the store's message, and every
  other row is written at once. A refused row never holds up another.

A batch in flight is a worklist of slices, so a retry never writes a slice twice; and every slice
carries a deduplication token, so a slice the store committed to some tables but not others (an
error or a timeout mid-insert) is completed by its retry, never doubled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from k2.errors import StoreError
from k2.hotstore.batch import (
    Batch,
    Chunk,
    Handoffs,
    TableSlices,
    Write,
    batch_ingest_rows,
    ns_column,
    without_unconvertible,
)
from k2.hotstore.inserts import write_slices
from k2.hotstore.rows import gap_rows, reject_rows
from k2.hotstore.schema import INGEST_TABLE
from k2.hotstore.stats import WriterStats
from k2.hotstore.store import HotStore
from k2.ingest.backoff import Backoff
from k2.records import Gap, Reject, Source, Trade
from k2.settings import WriterSettings
from k2.telemetry import PipelineMetrics

log = logging.getLogger(__name__)
RETRY_INITIAL_S, RETRY_MAX_S = 0.5, 10.0  # while the store is unavailable
LOG_EVERY_S = 30.0  # while the store stays unavailable, say so this often


# Called after each batch is committed (visible in silver) with the batch as inserted (the Arrow
# table of INGEST_INSERT: ts_event, ts_recv, duplicate, ...) and the commit time (UTC ns).
CommitListener = Callable[[pa.Table, int], None]


class StoreWriter:
    """Implements the feeds' Sink on top of the hot store."""

    def __init__(
        self,
        store: HotStore,
        settings: WriterSettings,
        last_seq: int,
        metrics: PipelineMetrics | None = None,
        retention_days: int | None = None,
    ) -> None:
        self._store, self._settings = store, settings
        # the shortest hot retention: trades older than it are said so when they arrive
        self._retention_ns = retention_days * 86_400 * 10**9 if retention_days else 0
        self._old_logged_at = 0.0
        self.metrics = metrics
        self._last_seq = last_seq
        # Batch tokens: unique to this writer's run, then numbered.
        self._run_id, self._batches = uuid.uuid4().hex, 0
        # Names this run's rows: host and process for the operator, the run id for uniqueness.
        self.writer_id = f"{socket.gethostname()}:{os.getpid()}:{self._run_id[:8]}"
        self._commit_lock = threading.Lock()
        self.stats = WriterStats()
        self._batch = Batch()
        self._inflight: Write | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._closed = False
        self._backoff = Backoff(RETRY_INITIAL_S, RETRY_MAX_S, jitter=0.2)
        self._logged_down_at = 0.0
        self.listeners: list[CommitListener] = []

    # -- Sink -------------------------------------------------------------------------------------
    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str, source: Source
    ) -> None:
        if not received:
            return
        accepted_ids = None if len(accepted) == len(received) else {id(t) for t in accepted}
        self._batch.chunks.append(Chunk(received, accepted_ids, conn_id, source, time.time_ns()))
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
            await self._room.wait_for(
                lambda: self.stats.pending < self._settings.max_pending_rows or self._closed
            )
        self.stats.backpressure_s += time.monotonic() - started

    # -- flushing ---------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `batch_interval_ms` (sooner when a batch fills) until `stop`.

        The interval counts from the start of the previous flush: a flush that took longer than
        the interval is followed at once by the next, so a batch never waits two intervals. A
        flush waiting for an unavailable store returns as soon as `stop` is set (`close` goes on).
        """
        interval = self._settings.batch_interval_ms / 1000
        while not stop.is_set():
            started = time.monotonic()
            await self.flush(stop=stop)
            wait = interval - (time.monotonic() - started)
            if wait > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    def _take(self) -> Batch:
        """Take up to `batch_rows` rows (whole chunks) off the buffer: one insert's worth."""
        buffered = self._batch
        if buffered.rows <= self._settings.batch_rows:
            self._batch = Batch()
            return buffered
        taken, rows = 0, 0
        while rows < self._settings.batch_rows:
            rows += len(buffered.chunks[taken].received)
            taken += 1
        batch = Batch(buffered.chunks[:taken], buffered.gaps, buffered.rejects, rows)
        # Gap records wait for the trades before them: they go with the last part of the buffer.
        self._batch = Batch(buffered.chunks[taken:], [], [], buffered.rows - rows)
        if buffered.gaps or buffered.rejects:
            self._batch.gaps, self._batch.rejects = buffered.gaps, buffered.rejects
            batch.gaps, batch.rejects = [], []
        self._wake.set()  # more is waiting: flush again at once
        return batch

    def buffered(self) -> bool:
        """Whether anything waits to be written (a batch in flight included)."""
        b = self._batch
        return self._inflight is not None or bool(b.rows or b.gaps or b.rejects)

    async def flush(self, stop: asyncio.Event | None = None, deadline: float | None = None) -> bool:
        """Write one batch of what is buffered, retrying while the store is unavailable.

        Return True once it is written (or nothing was buffered); False if `stop` was set or the
        monotonic `deadline` came first, leaving the batch in flight for the next call.
        """
        if self._inflight is None:
            batch = self._take()
            if not (batch.rows or batch.gaps or batch.rejects):
                return True
            self._batches += 1
            token = f"{self._run_id}:{self._batches}"
            self._inflight = Write(
                self._tables(batch), batch.rows, token, handoffs=Handoffs.of(batch.chunks)
            )
            # The Arrow tables hold the batch now (~270 bytes a row, against ~650 as Trade
            # objects): let the trades go before the insert rather than after it.
            batch.chunks.clear()
        w = self._inflight
        if not w.started_ns:
            w.started_ns = time.time_ns()
        while True:
            try:
                await asyncio.wrap_future(self._submit(w))
                break
            except StoreError as err:  # unavailable (the rows are not the problem): wait, retry
                delay = self._store_down(err)
                if deadline is not None and time.monotonic() + delay > deadline:
                    return False
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        return False
        self._inflight = None
        self._committed(w)
        async with self._room:
            self._room.notify_all()
        return True

    # -- the cluster shape: batches cut by the caller -----------------------------------------
    def commit_batch(self, batch: Batch, token: str, stop: threading.Event) -> bool:
        """Write `batch` as one unit whose identity is `token` (an ingest worker's partition offset
        range), retrying while the store is unavailable; True once written, False if `stop` came
        first. The same token again (a redelivery) writes nothing twice. Thread-safe: ingest
        consumers in one process share the writer, one batch at a time.
        """
        with self._commit_lock:
            self.stats.pending += batch.rows
            w = Write(self._tables(batch), batch.rows, token, started_ns=time.time_ns())
            if not self.retrying(lambda: self._submit(w).result(), stop):
                self.stats.pending -= batch.rows
                return False
            self._committed(w)
            refused, self._batch.rejects = self._batch.rejects, []
            if refused:  # trades the store refused, as rejects: part of this batch's identity
                rest = Write(self._tables(Batch(rejects=refused)), 0, f"{token}:refused")
                return self.retrying(lambda: self._submit(rest).result(), stop)
        return True

    def retrying(self, write: Callable[[], object], stop: threading.Event) -> bool:
        """Run `write` until it succeeds, waiting with backoff while the store is unavailable
        (counted as the writer's own failures); False if `stop` came first."""
        while True:
            try:
                write()
            except StoreError as err:
                if stop.wait(self._store_down(err)):
                    return False
                continue
            return True

    def _submit(self, w: Write) -> concurrent.futures.Future[None]:
        """Insert what is left of `w` on the store's thread (inserts.write_slices)."""
        return self._store.submit(write_slices, self._store, w, self.stats)

    def _store_down(self, err: StoreError) -> float:
        s = self.stats
        s.flush_failures += 1
        now = time.time()
        if not s.store_down_since:
            s.store_down_since = now
        s.store_error = str(err)
        delay = self._backoff.next_delay()
        if now - self._logged_down_at >= LOG_EVERY_S:
            self._logged_down_at = now
            log.error(
                "writer: the hot store is unavailable for %.0f s (%s); %d rows wait; "
                "retrying in %.1f s",
                now - s.store_down_since,
                err,
                s.pending,
                delay,
            )
        return delay

    def _committed(self, w: Write) -> None:
        s = self.stats
        if s.store_down_since:
            log.warning(
                "writer: the hot store takes writes again after %.0f s",
                time.time() - s.store_down_since,
            )
            s.store_down_since, s.store_error, self._logged_down_at = 0.0, "", 0.0
        self._backoff = Backoff(RETRY_INITIAL_S, RETRY_MAX_S, jitter=0.2)
        self._quarantine(w.refused)
        committed = time.time_ns()
        inserted = next((t.data for t in w.tables if t.name == INGEST_TABLE), None)
        if self.metrics is not None:
            none = np.empty(0, np.int64)
            recv_ns = none if inserted is None else ns_column(inserted, "ts_recv")
            event_ns = none if inserted is None else ns_column(inserted, "ts_event")
            self.metrics.batch_committed(w.rows, w.insert_s, recv_ns, committed)
            self.metrics.stages(event_ns, recv_ns, w.handoffs, w.started_ns, committed)
        if inserted is not None:
            if self._retention_ns:
                self._note_old(inserted, committed)
            for listener in self.listeners:
                listener(inserted, committed)
        s.batches += 1
        s.last_batch_rows = w.rows
        s.last_flush_at = time.time()
        s.pending -= w.rows

    def _note_old(self, inserted: pa.Table, committed: int) -> None:
        """Count (and say, at most every LOG_EVERY_S) trades older than the hot retention: a REST
        repair after a long outage. They are kept until archived (archive/retention.py)."""
        ts = pc.cast(inserted.column("ts_event"), pa.int64())
        old = int(pc.sum(pc.less(ts, committed - self._retention_ns)).as_py() or 0)
        if not old:
            return
        self.stats.old_rows += old
        if time.monotonic() - self._old_logged_at >= LOG_EVERY_S:
            self._old_logged_at = time.monotonic()
            log.warning(
                "writer: %d trades arrived older than the hot store's retention (%d days by event "
                "time, %d so far): kept until the archive holds them, then expired",
                old,
                self._retention_ns // (86_400 * 10**9),
                self.stats.old_rows,
            )

    def _quarantine(self, refused: list[tuple[str, pa.Table, str]]) -> None:
        """Refused trades become rejects (written with the next batch);
        K2's own records are logged."""
        for table, row, message in refused:
            if table == INGEST_TABLE:
                r = row.to_pylist()[0]
                self.stats.refused_rows += 1
                log.error(
                    "writer: the hot store refused %s %s trade %s: %s",
                    r["exchange"],
                    r["symbol"],
                    r["trade_id"],
                    message,
                )
                self._batch.rejects.append(
                    Reject(
                        r["exchange"],
                        f"the hot store refused this trade: {message}",
                        r["raw"],
                        int(row.column("ts_recv").cast(pa.int64())[0].as_py()),
                        r["conn_id"],
                    )
                )
            else:
                self.stats.dropped_records += 1
                log.error(
                    "writer: the hot store refused a %s record, which is dropped: %s (%s)",
                    table,
                    message,
                    row.to_pylist()[0],
                )

    def _tables(self, batch: Batch) -> list[TableSlices]:
        """Turn a batch into one Arrow table per destination, assigning ingest sequences."""
        chunks = batch.chunks
        try:
            ingest, self._last_seq = batch_ingest_rows(chunks, self._last_seq, self.writer_id)
        except (OverflowError, TypeError, ValueError, pa.ArrowException):
            # A trade whose values do not fit its columns (the adapters' limits should make this
            # impossible): send it to rejects, and convert the rest.
            chunks, refused = without_unconvertible(chunks)
            ingest, self._last_seq = batch_ingest_rows(chunks, self._last_seq, self.writer_id)
            batch.rejects.extend(refused)
            batch.rows -= len(refused)
            self.stats.pending -= len(refused)
            self.stats.refused_rows += len(refused)
        out = [TableSlices.whole(INGEST_TABLE, ingest)] if ingest is not None else []
        if batch.gaps:
            out.append(TableSlices.whole("feed_gaps", gap_rows(batch.gaps)))
        if batch.rejects:
            out.append(TableSlices.whole("rejects", reject_rows(batch.rejects)))
        return out

    # -- stopping ---------------------------------------------------------------------------------
    async def close(self, deadline: float | None = None) -> int:
        """Write what is left, until the monotonic `deadline` if one is given; call after the feeds
        have stopped. Return the trades that could not be written (0 when everything was)."""
        try:
            while self.buffered():
                if not await self.flush(deadline=deadline):
                    break
        finally:
            self._closed = True
            async with self._room:
                self._room.notify_all()
        left = self._batch.rows + (self._inflight.rows if self._inflight is not None else 0)
        self.stats.unwritten_rows = left
        if left or self.buffered():
            log.error(
                "writer: stopping with %d trades, %d gap records and %d rejects unwritten "
                "(the hot store: %s); the next start repairs the trades from the venues",
                left,
                len(self._batch.gaps),
                len(self._batch.rejects),
                self.stats.store_error or "slow",
            )
        return left
