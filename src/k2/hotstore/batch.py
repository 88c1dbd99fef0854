"""A batch on its way into the hot store: what the writer gathered, the per-table Arrow data
with the slices still to insert, the insert settings, and the ingest sequence."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from k2.hotstore.rows import ingest_rows, unconvertible
from k2.hotstore.schema import INGEST_TABLE
from k2.records import Gap, Reject, Source, Trade


class Chunk(NamedTuple):
    """One feed's delivery of trades: all from one connection and one source."""

    received: Sequence[Trade]
    accepted_ids: set[int] | None  # id() of the accepted ones among `received`; None: all
    conn_id: str
    source: Source
    handed_ns: int = 0  # when the feed handed it to the writer (0: not known, the cluster shape)


Chunks = list[Chunk]


class Handoffs(NamedTuple):
    """Per chunk of a batch: its trades, the oldest arrival among them, and when it was handed to
    the writer (ns). The latency stages before the insert are read from these."""

    rows: list[int]
    first_recv_ns: list[int]
    handed_ns: list[int]

    @classmethod
    def of(cls, chunks: Chunks) -> Handoffs | None:
        known = [c for c in chunks if c.handed_ns and c.received]
        if not known:
            return None
        return cls(
            [len(c.received) for c in known],
            [c.received[0].ts_recv for c in known],  # in arrival order: the first is oldest
            [c.handed_ns for c in known],
        )


def next_sequence(previous: int) -> int:
    """Return the next ingest sequence after `previous`: max(previous + 1, now in µs)."""
    return max(previous + 1, time.time_ns() // 1000)


@dataclass
class Batch:
    """What the feeds handed the writer since the last flush: trade chunks, gap records and
    rejects."""

    chunks: Chunks = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rows: int = 0


@dataclass
class TableSlices:
    """One destination table of a batch in flight, and the slices of it not yet inserted."""

    name: str
    data: pa.Table
    todo: list[tuple[int, int]]  # (offset, length), in order
    # single rows an unclassified error hit
    deferred: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def whole(cls, name: str, data: pa.Table) -> TableSlices:
        return cls(name, data, [(0, data.num_rows)] if data.num_rows else [])


@dataclass
class Write:
    """A batch on its way into the store; survives retries."""

    tables: list[TableSlices]
    rows: int  # trades in it
    token: str  # the batch's identity; each slice's token derives from it (slice_token)
    insert_s: float = 0.0
    handoffs: Handoffs | None = None  # for the latency stages (PipelineMetrics.stages)
    started_ns: int = 0  # when its first insert began
    written: int = 0  # slices inserted
    written_at_unclassified: int | None = None  # `written` when an unclassified error first struck
    refused: list[tuple[str, pa.Table, str]] = field(default_factory=list)  # (table, row, message)

    def split(self, table: TableSlices, message: str, refuse_single: bool = True) -> None:
        """Halve `table`'s next slice to find what the store refused; a single row is refused
        with `message` (or, with `refuse_single` False, left for a retry on its own)."""
        offset, length = table.todo.pop(0)
        if length == 1:
            if refuse_single:
                self.refused.append((table.name, table.data.slice(offset, 1), message))
            return
        half = length // 2
        table.todo[:0] = [(offset, half), (offset + half, length - half)]


# Up to this many rows, an ingest insert runs its materialized views (bronze x3, silver, candles)
# side by side: a small batch's insert is mostly per-part overhead, ~15 ms less in parallel, and
# small batches are where commit latency counts. Bigger batches run them one after another: on
# two cores that is no slower, and it does not hold every view's part buffers at once (~50 MB
# less peak RSS under a firehose). Merging candle states within a block is left to the
# background merges either way.
PARALLEL_VIEWS_MAX_ROWS = 10_000


def insert_settings(table: str, rows: int, token: str) -> dict[str, int | str]:
    """Settings of every insert.

    - Committed when the call returns: `async_insert` is 1 by default in chDB 26.9 and ClickHouse
      >= 26.2.4.
    - Deduplicated by `token`: the same slice inserted again (a retry after a partial commit, a
      redelivered bus batch) is dropped by every table that already has it, and written to those
      that lack it, materialized views' targets included (schema.DEDUP_WINDOW).
    - Ingest inserts also choose how their views run.
    """
    out: dict[str, int | str] = {
        "async_insert": 0,
        "insert_deduplicate": 1,
        "insert_deduplication_token": token,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
    }
    if table == INGEST_TABLE:
        out["parallel_view_processing"] = int(rows <= PARALLEL_VIEWS_MAX_ROWS)
        out["optimize_on_insert"] = 0
    return out


def slice_token(batch_token: str, table: str, offset: int, length: int) -> str:
    """The deduplication token of one slice of a batch: the same slice, the same token."""
    return f"{batch_token}:{table}:{offset}+{length}"


def batch_ingest_rows(chunks: Chunks, last_seq: int, writer: str) -> tuple[pa.Table | None, int]:
    """The ingest insert of a batch's trade chunks, numbered by `writer` with ingest sequences
    after `last_seq`; returns it (None: no trades) and the last sequence used."""
    trades: list[Trade] = []
    venues: list[str] = []
    conns: list[str] = []
    sources: list[str] = []
    sizes: list[int] = []
    dups: list[bool] | None = None
    for received, accepted_ids, conn_id, source, _handed in chunks:
        if accepted_ids is not None and dups is None:
            dups = [False] * len(trades)  # the first chunk with a duplicate: track them from here
        if dups is not None:
            dups.extend(
                [False] * len(received)
                if accepted_ids is None
                else [id(t) not in accepted_ids for t in received]
            )
        trades.extend(received)
        venues.append(received[0].exchange)
        conns.append(conn_id)
        sources.append(source)
        sizes.append(len(received))
    if not trades:
        return None, last_seq
    first = next_sequence(last_seq)
    rows = ingest_rows(trades, venues, conns, sources, sizes, dups, first, writer)
    return rows, first + len(trades) - 1


def without_unconvertible(chunks: Chunks) -> tuple[Chunks, list[Reject]]:
    """The chunks without the trades whose values do not fit their columns, and those trades as
    rejects with the reason."""
    bad: set[int] = set()
    rejects: list[Reject] = []
    for received, _accepted, conn_id, _source, _handed in chunks:
        for t in received:
            reason = unconvertible(t)
            if reason is not None:
                bad.add(id(t))
                rejects.append(Reject(t.exchange, reason, t.raw, t.ts_recv, conn_id))
    kept = [c._replace(received=[t for t in c.received if id(t) not in bad]) for c in chunks]
    return [c for c in kept if c.received], rejects


def ns_column(table: pa.Table, column: str) -> np.ndarray:
    """A timestamp column of `table` as int64 nanoseconds, one numpy array."""
    values: np.ndarray = pc.cast(table.column(column), pa.int64()).combine_chunks().to_numpy()
    return values
