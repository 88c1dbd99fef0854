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
from k2.hotstore.resume import unrecorded_holes
from k2.hotstore.schema import DATABASE, TIMEFRAMES, bronze_table, ohlcv_table
from k2.hotstore.store import HotStore
from k2.hotstore.writer import gap_rows
from k2.timeutil import ns_to_rfc3339

log = logging.getLogger(__name__)
MARKER = "clean-shutdown"
# Inserts in flight at a crash received their trades within this long before the last one stored.
RECENT_NS = 300 * 1_000_000_000


def mark_clean(hot_dir: Path) -> None:
    (hot_dir / MARKER).write_text("the last k2 process to own this store stopped cleanly\n")


def was_clean(hot_dir: Path) -> bool:
    """Return whether the last owner stopped cleanly (and forget it: this run must mark it again)."""
    marker = hot_dir / MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    return clean


def _one_minute_select() -> str:
    """The 1m candle view's SELECT (one definition: ddl/007_ohlcv_1m_mv.sql)."""
    text = resources.files("k2.hotstore").joinpath("ddl", "007_ohlcv_1m_mv.sql").read_text(encoding="utf-8")
    select = text[text.index("SELECT") :].rstrip().rstrip(";")
    if f"FROM {DATABASE}.silver_trades\nGROUP BY" not in select:
        raise RuntimeError("007_ohlcv_1m_mv.sql changed shape: update recovery._one_minute_select")
    return select


def recover(store: HotStore) -> dict[str, int]:
    """Make bronze and the candles consistent with silver after an unclean stop; return counts."""
    ((last_recv,),) = store.rows(
        f"SELECT toUnixTimestamp64Nano(max(ts_recv)) FROM {DATABASE}.silver_trades")
    if not last_recv:
        return {}
    since = last_recv - RECENT_NS
    done: dict[str, int] = {}
    for venue in VENUE_NAMES:
        table = bronze_table(venue)
        ((before,),) = store.rows(f"SELECT count() FROM {DATABASE}.{table}")
        store.execute(
            f"INSERT INTO {DATABASE}.{table} SELECT symbol, canonical_symbol, trade_id, price, amount, '', "
            "taker_side, ts_event, ts_recv, 'recovered', 'ws', false, '', ingest_seq "
            f"FROM {DATABASE}.silver_trades WHERE exchange = {{venue:String}} "
            "AND ts_recv >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') "
            f"AND (symbol, trade_id) NOT IN (SELECT symbol, trade_id FROM {DATABASE}.{table} "
            "WHERE ts_recv >= fromUnixTimestamp64Nano({since:Int64}, 'UTC'))",
            {"venue": venue, "since": since},
        )  # fmt: skip
        ((after,),) = store.rows(f"SELECT count() FROM {DATABASE}.{table}")
        if after > before:
            done[table] = after - before
    # The earliest event time among recently received trades (a backfill can be old): rebuild
    # every candle window from the start of that UTC day on.
    parts = [f"SELECT min(ts_event) AS t FROM {DATABASE}.{bronze_table(v)} WHERE ts_recv >= "
             "fromUnixTimestamp64Nano({since:Int64}, 'UTC')" for v in VENUE_NAMES]  # fmt: skip
    parts.append(f"SELECT min(ts_event) FROM {DATABASE}.silver_trades WHERE ts_recv >= "
                 "fromUnixTimestamp64Nano({since:Int64}, 'UTC')")  # fmt: skip
    ((day,),) = store.rows(
        f"SELECT toUnixTimestamp(toStartOfDay(min(t))) FROM ({' UNION ALL '.join(parts)}) WHERE t > 0",
        {"since": since})  # fmt: skip
    for tf in TIMEFRAMES:
        store.execute(f"DELETE FROM {DATABASE}.{ohlcv_table(tf.name)} WHERE window_start >= toDateTime({int(day)}, 'UTC')")
    rebuild = re.sub(rf"FROM {DATABASE}\.silver_trades\n",
                     f"FROM {DATABASE}.silver_trades WHERE ts_event >= toDateTime64({int(day)}, 9, 'UTC')\n",
                     _one_minute_select())  # fmt: skip
    store.execute(f"INSERT INTO {DATABASE}.{ohlcv_table('1m')} SETTINGS parallel_view_processing = 1 {rebuild}")
    ((windows,),) = store.rows(f"SELECT count() FROM {DATABASE}.candles_1m WHERE window_start >= toDateTime({int(day)}, 'UTC')")
    done["candle_windows_rebuilt_1m"] = windows
    restored = sum(v for k, v in done.items() if k.startswith("bronze"))
    log.warning("hot store: the last stop was not clean; rebuilt candles from %s on from silver, restored %d "
                "bronze rows", ns_to_rfc3339(int(day) * 1_000_000_000), restored)  # fmt: skip
    gaps = unrecorded_holes(store, [v for v in VENUE_NAMES if make_adapter(v).contiguous_ids])
    if gaps:
        store.insert_arrow(f"{DATABASE}.feed_gaps", gap_rows(gaps))
        done["gaps_recorded"] = len(gaps)
        log.warning("hot store: %d holes in silver had no gap record (lost with the last batch); recorded them "
                    "as pending, for the next k2 up to repair: %s", len(gaps), ", ".join(g.gap_id for g in gaps[:10]))  # fmt: skip
    return done
