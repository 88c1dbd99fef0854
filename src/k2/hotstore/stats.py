"""What the writer reports about itself: read by `k2 up`'s status line, /metrics and /health."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WriterStats:
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows written by this process
    batches: int = 0
    last_batch_rows: int = 0
    pending: int = 0  # rows accepted from feeds, not yet written
    backpressure_s: float = 0.0  # feed time spent waiting for the writer
    flush_failures: int = 0  # insert attempts that failed because the store was unavailable
    insert_seconds: dict[str, float] = field(default_factory=dict)  # table -> last insert duration
    last_flush_at: float = 0.0  # wall clock
    # wall clock of the first failed attempt in a row (0: inserts work)
    store_down_since: float = 0.0
    store_error: str = ""  # why, while the store is unavailable
    refused_rows: int = 0  # trades the store refused: quarantined as rejects
    old_rows: int = 0  # trades older than the hot retention when they arrived (kept until archived)
    dropped_records: int = 0  # gap or reject records the store refused: logged, not retried
    unwritten_rows: int = 0  # at stop: trades still buffered when the grace period ended

    def note_insert(self, table: str, rows: int, seconds: float) -> None:
        self.rows[table] = self.rows.get(table, 0) + rows
        self.insert_seconds[table] = seconds
