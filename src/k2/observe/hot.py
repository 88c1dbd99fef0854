"""What the hot store holds right now: rows and the newest event per table (cheap to ask often)."""

from __future__ import annotations

from k2.hotstore.schema import DATABASE, SILVER_TABLE, TIMEFRAMES, bronze_table, ohlcv_table
from k2.hotstore.store import HotStore


def freshness_tables(venues: list[str]) -> dict[str, str]:
    """Table -> the column whose maximum says how fresh it is."""
    tables = {SILVER_TABLE: "ts_event"} | {bronze_table(v): "ts_event" for v in venues}
    return tables | {ohlcv_table(tf.name): "window_start" for tf in TIMEFRAMES}


def hot_state(store: HotStore, venues: list[str]) -> tuple[dict[str, int], dict[str, float]]:
    """Return (rows per table, newest event time per table in epoch seconds; empty tables left out).

    Runs on the store's owner thread when called from there; a handful of metadata-backed
    aggregates (max of a sort-key column reads only the newest part's index).
    """
    rows = {
        str(t): int(n)
        for t, n in store.rows(
            "SELECT table, sum(rows) FROM system.parts "
            f"WHERE database = '{DATABASE}' AND active GROUP BY table"
        )
    }
    parts = [
        f"SELECT '{t}' AS t, "
        f"toFloat64(toUnixTimestamp64Milli(toDateTime64(max({col}), 3))) / 1000 AS ts "
        f"FROM {DATABASE}.{t}"
        for t, col in freshness_tables(venues).items()
    ]
    newest = {str(t): float(ts) for t, ts in store.rows(" UNION ALL ".join(parts)) if ts and ts > 0}
    return rows, newest
