"""The Arrow tables K2 inserts into the hot store: ingest batches, gap records, rejects.

Shared by the writer, crash recovery and (in the cluster shape) the ingest workers, so there is one
definition of each row. Nothing here talks to a store.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from k2.hotstore.schema import INGEST_INSERT, TS
from k2.records import BUY, Gap, Reject, Trade


def decimal_texts(values: Sequence[Decimal]) -> pa.Array:
    """Exact decimal text for the store to parse: str() is the fast way, but it writes exponents
    for very small or scaled values (1E-7, 6.0E+4); those few are written out in full instead."""
    texts = pa.array([str(v) for v in values], pa.string())
    exponent = pc.match_substring(texts, "E")
    if pc.any(exponent).as_py():
        fixed = texts.to_pylist()
        for i in np.flatnonzero(exponent.to_numpy(zero_copy_only=False)):
            fixed[i] = format(values[int(i)], "f")
        texts = pa.array(fixed, pa.string())
    return texts


def _per_chunk(values: list[str], counts: list[int]) -> pa.DictionaryArray:
    """A dictionary column from one value per chunk: no per-row Python work."""
    codes: dict[str, int] = {}
    index = np.fromiter((codes.setdefault(v, len(codes)) for v in values), np.int32, len(values))
    return pa.DictionaryArray.from_arrays(
        pa.array(np.repeat(index, counts)), pa.array(list(codes), pa.string())
    )


def ingest_rows(
    trades: Sequence[Trade],
    chunk_venues: list[str],
    chunk_conns: list[str],
    chunk_sources: list[str],
    chunk_sizes: list[int],
    dups: list[bool] | None,
    first_seq: int,
    writer: str,
) -> pa.Table:
    """One batch of trades, every venue, as the Arrow table the ingest insert takes.

    Prices and amounts go as their exact decimal text (ClickHouse parses them, outside Python's
    GIL); per-chunk constants (venue, connection, source) as dictionary columns. Raises
    (OverflowError, pyarrow's errors) if a value does not fit its column: see `unconvertible`.
    """
    n = len(trades)
    return pa.Table.from_arrays(
        [
            # a chunk comes from one feed: one venue, one connection, one source
            _per_chunk(chunk_venues, chunk_sizes),
            pa.array([t.symbol for t in trades], pa.string()),
            pa.array([t.canonical_symbol for t in trades], pa.string()),
            pa.array([t.trade_id for t in trades], pa.uint64()),
            decimal_texts([t.price for t in trades]),
            decimal_texts([t.amount for t in trades]),
            pa.array([t.venue_side for t in trades], pa.string()),
            pa.array([t.taker_side == BUY for t in trades], pa.bool_()),
            pa.array([t.ts_event for t in trades], TS),
            pa.array([t.ts_recv for t in trades], TS),
            _per_chunk(chunk_conns, chunk_sizes),
            _per_chunk(chunk_sources, chunk_sizes),
            pa.array(dups, pa.bool_()) if dups is not None else pa.array(np.zeros(n, np.bool_)),
            pa.array([t.raw for t in trades], pa.binary()),
            pa.array(np.arange(first_seq, first_seq + n, dtype=np.uint64)),
            _per_chunk([writer], [n]),
        ],
        schema=INGEST_INSERT,
    )


def unconvertible(trade: Trade) -> str | None:
    """Why `trade` cannot become an ingest row (None if it can). The adapters' limits make this
    never happen; it is what the writer checks, trade by trade, when a batch fails to convert."""
    try:
        pa.array([trade.trade_id], pa.uint64())
        pa.array([trade.ts_event, trade.ts_recv], TS)
        pa.array(
            [trade.symbol, trade.canonical_symbol, trade.venue_side, trade.taker_side], pa.string()
        )
        pa.array([trade.raw], pa.binary())
        decimal_texts([trade.price, trade.amount])
    except (OverflowError, TypeError, ValueError, pa.ArrowException) as err:
        return f"cannot be converted for the hot store: {type(err).__name__}: {err}"
    return None


def gap_rows(gaps: Sequence[Gap]) -> pa.Table:
    """Gap records as the Arrow table `feed_gaps` takes (the latest version of a gap_id wins)."""
    return pa.table(
        {
            "gap_id": [g.gap_id for g in gaps],
            "exchange": [g.exchange for g in gaps],
            "symbol": [g.symbol for g in gaps],
            "kind": [str(g.kind) for g in gaps],
            "first_id": pa.array([g.first_id for g in gaps], pa.uint64()),
            "last_id": pa.array([g.last_id for g in gaps], pa.uint64()),
            "ts_from": pa.array([g.ts_from for g in gaps], TS),
            "ts_to": pa.array([g.ts_to for g in gaps], TS),
            "detected_at": pa.array([g.detected_at for g in gaps], TS),
            "resolved_at": pa.array([g.resolved_at for g in gaps], TS),
            "outcome": [str(g.outcome) for g in gaps],
            "missing": pa.array([g.missing for g in gaps], pa.uint64()),
            "recovered": pa.array([g.recovered for g in gaps], pa.uint64()),
            "detail": [g.detail for g in gaps],
            "version": pa.array([g.resolved_at or g.detected_at for g in gaps], pa.uint64()),
        }
    )


def reject_rows(rejects: Sequence[Reject]) -> pa.Table:
    """Rejects as the Arrow table `rejects` takes."""
    return pa.table(
        {
            "exchange": [r.exchange for r in rejects],
            "reason": [r.reason for r in rejects],
            "raw": pa.array([r.raw for r in rejects], pa.binary()),
            "ts_recv": pa.array([r.ts_recv for r in rejects], TS),
            "conn_id": [r.conn_id for r in rejects],
        }
    )
