"""One read path for candles over both tiers.

Candles stay in hot for good; the archive serves the windows before the first one hot holds for
the filters (a hot store started next to an older archive). Trades, and the filter both read with,
are in query/tiers.py.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pyarrow as pa
import pyarrow.compute as pc

from k2.hotstore.queries import merged_candles_sql, timeframe
from k2.hotstore.schema import DATABASE, TIMEFRAME_BY_NAME, ohlcv_table
from k2.hotstore.store import HotStore
from k2.query.frames import CANDLE_KEY, CANDLE_ORDER, CANDLE_SCHEMA, conform
from k2.query.tiers import Archive, Filter, check_limit, merge_unique, within


def hot_candles(store: HotStore, tf: str, f: Filter, limit: int | None = None) -> pa.Table:
    """Finished and current candles in hot (merged, with VWAP): the newest `limit`, or all of
    them, in window order."""
    where, params = f.sql("window_start")
    if limit is None:
        sql = merged_candles_sql(tf, where, "window_start, exchange, canonical_symbol")
    else:
        sql = merged_candles_sql(
            tf,
            where,
            "window_start DESC, exchange DESC, canonical_symbol DESC",
            f" LIMIT {int(limit)} SETTINGS max_threads = 1",
        )
    return conform_candles(store.query_arrow(sql, params))


def conform_candles(table: pa.Table) -> pa.Table:
    """What a merged_candles_sql query returns, in the candle schema and order."""
    table = table.rename_columns(CANDLE_SCHEMA.names)  # CANDLE_MERGE is in the schema's order
    seconds = pc.cast(table.column("window_start"), pa.int64())
    table = table.set_column(3, "window_start", pc.multiply(seconds, 1_000_000_000))
    return conform(table, CANDLE_SCHEMA).sort_by(CANDLE_ORDER)


def cold_candles(lake: Archive, tf: str, f: Filter) -> pa.Table:
    """Archived candles of one timeframe, exactly within the filter (on window_start)."""
    from k2.archive.tables import BY_NAME

    table = lake.table(BY_NAME[ohlcv_table(tf)])
    scanned = table.scan(row_filter=f.iceberg("window_start")).to_arrow()
    scanned = scanned.append_column("timeframe", pa.array([tf] * len(scanned), pa.string()))
    return within(conform(scanned, CANDLE_SCHEMA), "window_start", f).sort_by(CANDLE_ORDER)


def _hot_first_window(store: HotStore, tf: str, f: Filter) -> int | None:
    where, params = replace(f, start_ns=None, end_ns=None).sql("window_start")
    rows = store.rows(
        f"SELECT toUnixTimestamp(min(window_start)), count() > 0 "
        f"FROM {DATABASE}.{ohlcv_table(tf)}{where}",
        params,
    )
    return int(rows[0][0]) * 1_000_000_000 if rows and rows[0][1] else None


def first_candle(store: HotStore, lake: Archive | None, tf: str, f: Filter) -> int | None:
    """The earliest window start (ns) in the filter's range with a candle, in either tier."""
    where, params = f.sql("window_start")
    ((count, first),) = store.rows(
        f"SELECT count(), toUnixTimestamp(min(window_start)) FROM {DATABASE}.{ohlcv_table(tf)}"
        f"{where}",
        params,
    )
    found = int(first) * 1_000_000_000 if count else None
    hot_first = _hot_first_window(store, tf, f)
    if lake is not None and (hot_first is None or f.start_ns is None or f.start_ns < hot_first):
        from k2.archive.tables import BY_NAME

        scan = lake.table(BY_NAME[ohlcv_table(tf)]).scan(
            row_filter=f.between(None, hot_first).iceberg("window_start"),
            selected_fields=("window_start",),
        )
        older = pc.min(scan.to_arrow().column("window_start")).value
        if older is not None:
            older_ns = int(older) * 1000  # µs
            found = older_ns if found is None else min(found, older_ns)
    return found


def candles(
    store: HotStore, lake: Archive | None, tf: str, f: Filter, limit: int = 100
) -> pa.Table:
    """The newest `limit` candles matching `f` (the current window as it stands), oldest first."""
    check_limit(limit)
    seconds = TIMEFRAME_BY_NAME[timeframe(tf)].seconds
    hot = None
    if f.start_ns is None and f.venue and f.symbol:
        # "The last N candles of one market": merge N windows' states, not the market's whole
        # history. On a live store the last N windows before now hold them; otherwise bound by
        # the market's own latest window (a primary-key read); if trading was sparse, go wide.
        span = 2 * (limit - 1) * seconds * 1_000_000_000
        until = f.end_ns if f.end_ns is not None else time.time_ns()
        hot = hot_candles(store, tf, replace(f, start_ns=until - span), limit)
        if len(hot) < limit:
            where, params = f.sql("window_start")
            latest = store.rows(
                f"SELECT toUnixTimestamp(max(window_start)) FROM {DATABASE}.ohlcv_{tf}{where}",
                params,
            )
            if latest and latest[0][0]:
                start = latest[0][0] * 1_000_000_000 - span // 2
                hot = hot_candles(store, tf, replace(f, start_ns=start), limit)
    if hot is None or len(hot) < limit:
        hot = hot_candles(store, tf, f, limit)
    if lake is None or len(hot) >= limit:
        return hot
    first = _hot_first_window(store, tf, f)
    if first is not None and f.start_ns is not None and first <= f.start_ns:
        return hot  # hot holds the whole range
    older = cold_candles(lake, tf, f.between(None, first))
    merged = merge_unique([hot, older], CANDLE_KEY, CANDLE_ORDER)
    return merged.slice(max(0, len(merged) - limit))


CandleKey = tuple[int, str, str]  # (window_start ns, exchange, canonical_symbol): the order


def candles_before(
    store: HotStore, lake: Archive | None, tf: str, f: Filter, limit: int, before: CandleKey
) -> pa.Table:
    """The newest `limit` candles matching `f` that are ordered before `before` (the next page
    back), oldest first."""
    at, exchange, market = before
    earlier = candles(store, lake, tf, f.between(None, at), limit)
    same = candles_between(store, lake, tf, f.between(at, at + 1))
    ex, sym = same.column("exchange"), same.column("canonical_symbol")
    same = same.filter(
        pc.or_(pc.less(ex, exchange), pc.and_(pc.equal(ex, exchange), pc.less(sym, market)))
    )
    merged = pa.concat_tables([earlier, same]) if len(same) else earlier
    return merged.slice(max(0, len(merged) - limit))


def last_candle_key(table: pa.Table, row: int) -> CandleKey:
    """Row `row`'s place in the candle order."""
    return (
        int(pc.cast(table.column("window_start"), pa.int64())[row].as_py()),
        str(table.column("exchange")[row].as_py()),
        str(table.column("canonical_symbol")[row].as_py()),
    )


def candles_between(store: HotStore, lake: Archive | None, tf: str, f: Filter) -> pa.Table:
    """Every candle matching `f`, in window order."""
    hot = hot_candles(store, tf, f)
    if lake is None:
        return hot
    first = _hot_first_window(store, tf, f)
    if first is not None and f.start_ns is not None and first <= f.start_ns:
        return hot  # hot holds the whole range
    return merge_unique(
        [hot, cold_candles(lake, tf, f.between(None, first))], CANDLE_KEY, CANDLE_ORDER
    )
