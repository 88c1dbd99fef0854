"""Watermarks per writer: how far the archive holds each writer's rows of a trade table.

A row's ingest sequence is monotonic per writer (hotstore/writer.py), not across writers: two
`k2 ingest` processes number their batches from their own clocks, and one's batch may commit
after the other's higher-numbered one. A single "everything up to sequence S" mark would then
pass over rows that were not visible yet. Per writer it is exact: a writer commits its batches one
after another, so once its row numbered S is visible in a table, all of its lower ones are.

The marks ride in the Iceberg snapshot's summary as JSON ({writer: sequence}), next to the scalar
watermark, which stays for display and alerting (the newest sequence archived). Archives made
before the marks carry only the scalar: it is the mark of the rows written before the writer
column existed, whose writer is ''.
"""

from __future__ import annotations

import json

from pyiceberg.table import Table

from k2.hotstore.schema import DATABASE
from k2.hotstore.store import HotStore

Marks = dict[str, int]


def snapshot_text(table: Table, key: str) -> str | None:
    """Property `key` of the newest snapshot that carries it, walking back through parents (so a
    snapshot without it, made by pyiceberg or another tool, never hides the last one)."""
    snapshot = table.current_snapshot()
    while snapshot is not None:
        value = snapshot.summary.additional_properties.get(key) if snapshot.summary else None
        if value is not None:
            return value
        snapshot = (
            table.snapshot_by_id(snapshot.parent_snapshot_id)
            if snapshot.parent_snapshot_id
            else None
        )
    return None


def read(table: Table, key: str, legacy_key: str) -> Marks:
    """The marks under `key`; an archive older than them has the scalar `legacy_key`, the mark of
    writer ''."""
    text = snapshot_text(table, key)
    if text is not None:
        return {str(w): int(s) for w, s in json.loads(text).items()}
    legacy = snapshot_text(table, legacy_key)
    return {"": int(legacy)} if legacy is not None else {}


def encode(marks: Marks) -> str:
    return json.dumps(marks, sort_keys=True, separators=(",", ":"))


def highs(store: HotStore, table: str) -> Marks:
    """Each writer's highest sequence visible in hot `table`."""
    return {
        str(w): int(s)
        for w, s in store.rows(
            f"SELECT writer, max(ingest_seq) FROM {DATABASE}.{table} GROUP BY writer"
        )
    }


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_map(marks: Marks) -> str:
    """`marks` as a ClickHouse Map(String, UInt64): `<map>[writer]` is 0 for a writer not in it."""
    pairs = ", ".join(f"{_literal(w)}, {int(s)}" for w, s in sorted(marks.items()))
    return f"CAST(map({pairs}), 'Map(String, UInt64)')"


def between(lower: Marks, upper: Marks) -> str:
    """SQL condition: rows each writer numbered in (lower[writer], upper[writer]]; a writer not in
    `lower` from its first row, one not in `upper` not at all. The plain bounds let the tables'
    minmax index on ingest_seq skip what no writer's range covers."""
    if not upper:
        return "0"
    low = min(lower.get(w, 0) for w in upper)
    return (
        f"ingest_seq > {low} AND ingest_seq <= {max(upper.values())} "
        f"AND ingest_seq > {sql_map(lower)}[writer] AND ingest_seq <= {sql_map(upper)}[writer]"
    )


def upto(marks: Marks) -> str:
    """SQL condition: rows at or below their writer's mark (what the archive holds)."""
    return f"ingest_seq <= {sql_map(marks)}[writer]" if marks else "0"
