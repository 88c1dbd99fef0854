"""Repair the hot store after an unclean stop (kill -9, power loss, OOM).

One batch is one INSERT, but ClickHouse commits each target table of that insert (bronze x3,
silver, the six candle tables) on its own. A process killed mid-insert can leave some committed
and others not. Silver decides what the feeds re-fetch on restart (its cursors), so it is the
source of truth; the rest is made consistent with it here, before anything else runs:

- candles are a pure function of silver: every candle window from the start of the earliest
  affected UTC day is deleted and rebuilt from silver (the 1m rebuild feeds the rollups again);
- silver rows bronze lacks are written to bronze again, marked conn_id 'recovered' (their raw
  JSON is gone; the trade itself is not);
- holes among the ids silver got in the last minute that no gap record covers (the record was
  in what the crash lost) are recorded as pending gaps, which the next `k2 up` repairs.

A clean stop writes a marker; its absence at start means the last stop was not clean.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

from k2.exchanges import VENUE_NAMES, make_adapter
from k2.hotstore.rows import gap_rows
from k2.hotstore.schema import DATABASE, TIMEFRAMES, bronze_table, ohlcv_table
from k2.hotstore.store import HotStore
from k2.ingest.repair import id_gap
from k2.ingest.state import subtract_ranges
from k2.records import Gap
from k2.timeutil import ns_to_rfc3339

log = logging.getLogger(__name__)
MARKER = "clean-shutdown"
# Inserts in flight at a crash received their trades within this long before the last one stored.
RECENT_NS = 300 * 1_000_000_000
# Silver ids written this long (µs of ingest sequence) before the newest are checked for holes no
# gap record covers. What a crash can cut short is the last flush or two (a flush starts every
# 100 ms and a 50,000-row batch takes well under a second): a minute is ample.
CRASH_SCAN_US = 60 * 1_000_000
# Recovery's INSERT ... SELECT: committed on return, and never taken for a repeat of an earlier
# block (the tables keep insert tokens, and without one an identical block would be dropped).
REBUILD_SETTINGS = {"async_insert": 0, "insert_deduplicate": 0}


def mark_clean(hot_dir: Path) -> None:
    (hot_dir / MARKER).write_text("the last k2 process to own this store stopped cleanly\n")


def was_clean(hot_dir: Path) -> bool:
    """Return whether the last owner stopped cleanly (and forget it:
    this run must mark it again)."""
    marker = hot_dir / MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    return clean


def _one_minute_select() -> str:
    """The 1m candle view's SELECT (one definition: ddl/007_ohlcv_1m_mv.sql)."""
    text = (
        resources.files("k2.hotstore")
        .joinpath("ddl", "007_ohlcv_1m_mv.sql")
        .read_text(encoding="utf-8")
    )
    select = text[text.index("SELECT") :].rstrip().rstrip(";")
    if f"FROM {DATABASE}.silver_trades\nGROUP BY" not in select:
        raise RuntimeError("007_ohlcv_1m_mv.sql changed shape: update recovery._one_minute_select")
    return select


def unrecorded_holes(store: HotStore, venues: list[str]) -> list[Gap]:
    """Return the holes around silver's recently written ids that no gap record covers, as new
    pending gaps. Each symbol is read only across the ids written recently, and one row below."""
    if not venues:
        return []
    params: dict[str, object] = {"venues": venues}
    ((top,),) = store.rows(
        f"SELECT max(ingest_seq) FROM {DATABASE}.silver_trades "
        "WHERE exchange IN {venues:Array(String)}",
        params,
    )
    if not top:
        return []
    params["since"] = max(int(top) - CRASH_SCAN_US, 0)
    spans = store.rows(
        "SELECT exchange, symbol, canonical_symbol, min(trade_id), max(trade_id), "
        f"toUnixTimestamp64Nano(argMin(ts_event, trade_id)) FROM {DATABASE}.silver_trades "
        "WHERE exchange IN {venues:Array(String)} AND ingest_seq >= {since:UInt64} "
        "GROUP BY exchange, symbol, canonical_symbol ORDER BY exchange, symbol",
        params,
    )
    recorded: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for exchange, symbol, first, last in store.rows(
        f"SELECT exchange, symbol, first_id, last_id FROM {DATABASE}.feed_gaps FINAL "
        "WHERE kind = 'ids' AND exchange IN {venues:Array(String)}",
        params,
    ):
        recorded.setdefault((exchange, symbol), []).append((first, last))
    found = []
    for exchange, symbol, canonical, lo, hi, lo_ts in spans:
        market = {"c": canonical, "e": exchange, "s": symbol, "lo": lo, "hi": hi, "lo_ts": lo_ts}
        where = (  # silver's key
            "WHERE canonical_symbol = {c:String} AND exchange = {e:String} AND symbol = {s:String}"
        )
        # Jumps between consecutive ids across the span
        # (rows written earlier count: they fill holes).
        holes = [
            (prev + 1, tid - 1, prev_ts, ts)
            for prev, tid, prev_ts, ts in store.rows(
                "SELECT prev_id, trade_id, prev_ts, ts FROM ("
                " SELECT trade_id, toUnixTimestamp64Nano(ts_event) AS ts, row_number() OVER w AS n,"
                "  lagInFrame(trade_id) OVER w AS prev_id, lagInFrame(ts) OVER w AS prev_ts"
                f" FROM {DATABASE}.silver_trades {where}"
                " AND trade_id BETWEEN {lo:UInt64} AND {hi:UInt64}"
                " WINDOW w AS (ORDER BY trade_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))"
                " WHERE n > 1 AND trade_id > prev_id + 1 ORDER BY trade_id",
                market,
            )
        ]
        # Below the span: the last trade before it, read backwards along silver's sorting key
        # (these venues' ids rise with time), however long ago that was.
        before = store.rows(
            "SELECT trade_id, toUnixTimestamp64Nano(ts_event) "
            f"FROM {DATABASE}.silver_trades {where} "
            "AND ts_event <= fromUnixTimestamp64Nano({lo_ts:Int64}, 'UTC') "
            "AND trade_id < {lo:UInt64} "
            "ORDER BY ts_event DESC, trade_id DESC LIMIT 1",
            market,
        )
        if before and before[0][0] + 1 < lo:
            holes.insert(0, (before[0][0] + 1, lo - 1, before[0][1], lo_ts))
        for first, last, ts_from, ts_to in holes:
            for a, b in subtract_ranges(first, last, recorded.get((exchange, symbol), [])):
                found.append(id_gap(exchange, symbol, a, b, ts_from, ts_to))
    return found


def recover(store: HotStore) -> dict[str, int]:
    """Make bronze and the candles consistent with silver after an unclean stop; return counts."""
    ((last_recv,),) = store.rows(
        f"SELECT toUnixTimestamp64Nano(max(ts_recv)) FROM {DATABASE}.silver_trades"
    )
    if not last_recv:
        return {}
    since = last_recv - RECENT_NS
    done: dict[str, int] = {}
    for venue in VENUE_NAMES:
        table = bronze_table(venue)
        ((before,),) = store.rows(f"SELECT count() FROM {DATABASE}.{table}")
        store.execute(
            f"INSERT INTO {DATABASE}.{table} "
            "SELECT symbol, canonical_symbol, trade_id, price, amount, '', "
            "taker_side, ts_event, ts_recv, 'recovered', 'ws', false, '', ingest_seq, writer "
            f"FROM {DATABASE}.silver_trades WHERE exchange = {{venue:String}} "
            "AND ts_recv >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') "
            f"AND (symbol, trade_id) NOT IN (SELECT symbol, trade_id FROM {DATABASE}.{table} "
            "WHERE ts_recv >= fromUnixTimestamp64Nano({since:Int64}, 'UTC'))",
            {"venue": venue, "since": since},
            REBUILD_SETTINGS,
        )
        ((after,),) = store.rows(f"SELECT count() FROM {DATABASE}.{table}")
        if after > before:
            done[table] = after - before
    # The earliest event time among recently received trades (a backfill can be old): rebuild
    # every candle window from the start of that UTC day on.
    parts = [
        f"SELECT min(ts_event) AS t FROM {DATABASE}.{bronze_table(v)} WHERE ts_recv >= "
        "fromUnixTimestamp64Nano({since:Int64}, 'UTC')"
        for v in VENUE_NAMES
    ]
    parts.append(
        f"SELECT min(ts_event) FROM {DATABASE}.silver_trades WHERE ts_recv >= "
        "fromUnixTimestamp64Nano({since:Int64}, 'UTC')"
    )
    ((day,),) = store.rows(
        "SELECT toUnixTimestamp(toStartOfDay(min(t))) "
        f"FROM ({' UNION ALL '.join(parts)}) WHERE t > 0",
        {"since": since},
    )
    for tf in TIMEFRAMES:
        store.execute(
            f"DELETE FROM {DATABASE}.{ohlcv_table(tf.name)} "
            f"WHERE window_start >= toDateTime({int(day)}, 'UTC')"
        )
    rebuild = re.sub(
        rf"FROM {DATABASE}\.silver_trades\n",
        f"FROM {DATABASE}.silver_trades WHERE ts_event >= toDateTime64({int(day)}, 9, 'UTC')\n",
        _one_minute_select(),
    )
    store.execute(
        f"INSERT INTO {DATABASE}.{ohlcv_table('1m')} {rebuild}",
        settings=REBUILD_SETTINGS | {"parallel_view_processing": 1},
    )
    ((windows,),) = store.rows(
        f"SELECT count() FROM {DATABASE}.candles_1m "
        f"WHERE window_start >= toDateTime({int(day)}, 'UTC')"
    )
    done["candle_windows_rebuilt_1m"] = windows
    restored = sum(v for k, v in done.items() if k.startswith("bronze"))
    log.warning(
        "hot store: the last stop was not clean; rebuilt candles from %s on from silver, "
        "restored %d bronze rows",
        ns_to_rfc3339(int(day) * 1_000_000_000),
        restored,
    )
    gaps = unrecorded_holes(store, [v for v in VENUE_NAMES if make_adapter(v).contiguous_ids])
    if gaps:
        store.insert_arrow(f"{DATABASE}.feed_gaps", gap_rows(gaps), REBUILD_SETTINGS)
        done["gaps_recorded"] = len(gaps)
        log.warning(
            "hot store: %d holes in silver had no gap record (lost with the last batch); "
            "recorded them as pending, for the next k2 up to repair: %s",
            len(gaps),
            ", ".join(g.gap_id for g in gaps[:10]),
        )
    return done
