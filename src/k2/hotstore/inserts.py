"""A batch's inserts, on the store's owner thread: each slice with its deduplication token, the
rows the store refuses isolated by halving, and what was written counted (writer.py calls this).
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.compute as pc

from k2.errors import StoreError, StoreRefused, StoreUnavailable
from k2.hotstore.batch import TableSlices, Write, insert_settings, slice_token
from k2.hotstore.schema import DATABASE, INGEST_TABLE, SILVER_TABLE, bronze_table
from k2.hotstore.stats import WriterStats
from k2.hotstore.store import HotStore


def write_slices(store: HotStore, w: Write, stats: WriterStats) -> None:
    """Insert what is left of `w`: bronze first (silver and candles follow inside each insert),
    then gap records, so a gap is never marked repaired before its trades exist.

    Raises StoreUnavailable (or StoreError) when the store is the problem; what was inserted
    stays inserted, and the next call resumes with the rest.
    """
    for table in w.tables:
        while table.todo:
            offset, length = table.todo[0]
            try:
                _insert(store, w, table, offset, length, stats)
            except StoreRefused as err:
                w.split(table, str(err))
                continue
            except StoreUnavailable:
                raise
            except StoreError as err:
                # Unclassified: the rows, if the store keeps taking others meanwhile.
                if w.written_at_unclassified is None:
                    w.written_at_unclassified = w.written
                if length > 1 and store.ping():
                    w.split(table, str(err), refuse_single=False)
                elif length == 1:
                    table.deferred.append(table.todo.pop(0))
                else:
                    raise
                continue
            table.todo.pop(0)
        if table.deferred:
            # Single rows an unclassified error struck: refused if other rows went in since
            # (so the store works); otherwise it is the store, and they wait.
            if w.written_at_unclassified is not None and w.written > w.written_at_unclassified:
                for offset, _ in table.deferred:
                    try:
                        _insert(store, w, table, offset, 1, stats)
                    except StoreUnavailable:
                        raise
                    except StoreError as err:
                        w.refused.append((table.name, table.data.slice(offset, 1), str(err)))
                table.deferred.clear()
            else:
                table.todo, table.deferred = table.deferred, []
                raise StoreUnavailable(
                    f"every insert into {table.name} fails; the store answers, the rows "
                    "look fine: treated as the store being unavailable"
                )


def _insert(
    store: HotStore, w: Write, table: TableSlices, offset: int, length: int, stats: WriterStats
) -> None:
    """One slice, with its token; counted once the store has it."""
    piece = table.data.slice(offset, length)
    started = time.perf_counter()
    store.insert_arrow(
        f"{DATABASE}.{table.name}",
        piece,
        insert_settings(table.name, length, slice_token(w.token, table.name, offset, length)),
    )
    seconds = time.perf_counter() - started
    w.written += 1
    w.insert_s += seconds
    _count(table.name, piece, seconds, stats)


def _count(name: str, piece: pa.Table, seconds: float, stats: WriterStats) -> None:
    if name == INGEST_TABLE:  # fanned out to the bronze tables, silver and the candles
        counts = pc.value_counts(piece.column("exchange").combine_chunks().dictionary_decode())
        for item in counts.to_pylist():
            stats.note_insert(bronze_table(item["values"]), item["counts"], seconds)
        accepted = piece.num_rows - (pc.sum(piece.column("duplicate")).as_py() or 0)
        stats.note_insert(SILVER_TABLE, accepted, seconds)
    else:
        stats.note_insert(name, piece.num_rows, seconds)
