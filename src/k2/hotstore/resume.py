"""Where the feeds resume after a restart (even after kill -9), read back from the store.

Silver is the truth: the cursors are its highest ids, and a pending gap's holes are the ids of its
range silver still lacks. A gap record is written with or after the trade that revealed it, so a
crash can leave a hole in silver with no record at all (the record was in the batch the crash
lost, or an insert was cut between two of its parts); `unrecorded_holes` finds those, and the
crash recovery (recovery.py) records them as pending gaps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from k2.exchanges import VENUE_NAMES, make_adapter
from k2.hotstore.schema import DATABASE, bronze_table
from k2.hotstore.store import HotStore
from k2.ingest.repair import id_gap
from k2.ingest.state import ResumedGap, ResumeState, SymbolCursor
from k2.records import PENDING, Gap

log = logging.getLogger(__name__)
# After a crash, the ids written this long (µs of ingest sequence) before the newest are checked
# for holes. What a crash can cut short is the last flush or two (a flush starts every 100 ms and
# a 50,000-row batch takes well under a second): a minute is ample.
CRASH_SCAN_US = 60 * 1_000_000


def _holes(first: int, last: int, present: Iterable[int]) -> list[tuple[int, int]]:
    holes, lo = [], first
    for trade_id in sorted(set(present)):
        if trade_id > lo:
            holes.append((lo, trade_id - 1))
        lo = max(lo, trade_id + 1)
    if lo <= last:
        holes.append((lo, last))
    return holes


def _subtract(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Return the parts of lo..hi outside every (inclusive) range in `covered`."""
    parts = [(lo, hi)]
    for a, b in covered:
        parts = [piece for x, y in parts for piece in ((x, min(y, a - 1)), (max(x, b + 1), y)) if piece[0] <= piece[1]]
    return parts


def unrecorded_holes(store: HotStore, venues: list[str]) -> list[Gap]:
    """Return the holes around silver's recently written ids that no gap record covers, as new
    pending gaps. Each symbol is read only across the ids written recently, and one row below."""
    if not venues:
        return []
    params: dict[str, object] = {"venues": venues}
    ((top,),) = store.rows(f"SELECT max(ingest_seq) FROM {DATABASE}.silver_trades "
                           "WHERE exchange IN {venues:Array(String)}", params)  # fmt: skip
    if not top:
        return []
    params["since"] = max(int(top) - CRASH_SCAN_US, 0)
    spans = store.rows(
        "SELECT exchange, symbol, canonical_symbol, min(trade_id), max(trade_id), "
        f"toUnixTimestamp64Nano(argMin(ts_event, trade_id)) FROM {DATABASE}.silver_trades "
        "WHERE exchange IN {venues:Array(String)} AND ingest_seq >= {since:UInt64} "
        "GROUP BY exchange, symbol, canonical_symbol ORDER BY exchange, symbol", params)  # fmt: skip
    recorded: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for exchange, symbol, first, last in store.rows(
        f"SELECT exchange, symbol, first_id, last_id FROM {DATABASE}.feed_gaps FINAL "
        "WHERE kind = 'ids' AND exchange IN {venues:Array(String)}", params):  # fmt: skip
        recorded.setdefault((exchange, symbol), []).append((first, last))
    found = []
    for exchange, symbol, canonical, lo, hi, lo_ts in spans:
        market = {"c": canonical, "e": exchange, "s": symbol, "lo": lo, "hi": hi, "lo_ts": lo_ts}
        where = ("WHERE canonical_symbol = {c:String} AND exchange = {e:String} AND symbol = {s:String}")  # silver's key
        # Jumps between consecutive ids across the span (rows written earlier count: they fill holes).
        holes = [(prev + 1, tid - 1, prev_ts, ts) for prev, tid, prev_ts, ts in store.rows(
            "SELECT prev_id, trade_id, prev_ts, ts FROM ("
            " SELECT trade_id, toUnixTimestamp64Nano(ts_event) AS ts, row_number() OVER w AS n,"
            "  lagInFrame(trade_id) OVER w AS prev_id, lagInFrame(ts) OVER w AS prev_ts"
            f" FROM {DATABASE}.silver_trades {where} AND trade_id BETWEEN {{lo:UInt64}} AND {{hi:UInt64}}"
            " WINDOW w AS (ORDER BY trade_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))"
            " WHERE n > 1 AND trade_id > prev_id + 1 ORDER BY trade_id", market)]  # fmt: skip
        # Below the span: the last trade before it, read backwards along silver's sorting key
        # (these venues' ids rise with time), however long ago that was.
        before = store.rows(
            f"SELECT trade_id, toUnixTimestamp64Nano(ts_event) FROM {DATABASE}.silver_trades {where} "
            "AND ts_event <= fromUnixTimestamp64Nano({lo_ts:Int64}, 'UTC') AND trade_id < {lo:UInt64} "
            "ORDER BY ts_event DESC, trade_id DESC LIMIT 1", market)  # fmt: skip
        if before and before[0][0] + 1 < lo:
            holes.insert(0, (before[0][0] + 1, lo - 1, before[0][1], lo_ts))
        for first, last, ts_from, ts_to in holes:
            for a, b in _subtract(first, last, recorded.get((exchange, symbol), [])):
                found.append(id_gap(exchange, symbol, a, b, ts_from, ts_to))
    return found


def load_resume(store: HotStore, recent_ids: int) -> ResumeState:
    """Return per-venue cursors from silver and the gaps that were still pending."""
    state = ResumeState()
    for exchange, symbol, high, high_ts in store.rows(
        f"SELECT exchange, symbol, max(trade_id), toUnixTimestamp64Nano(argMax(ts_event, trade_id)) "
        f"FROM {DATABASE}.silver_trades GROUP BY exchange, symbol"
    ):
        state.cursors.setdefault(exchange, {})[symbol] = SymbolCursor(high, high_ts)
    windowed = [v for v in VENUE_NAMES if not make_adapter(v).contiguous_ids]
    if windowed:
        # Venues deduplicated by a window of recent ids need that window back.
        for exchange, symbol, ids in store.rows(
            f"SELECT exchange, symbol, groupArray(trade_id) FROM (SELECT exchange, symbol, trade_id "
            f"FROM {DATABASE}.silver_trades WHERE exchange IN {{venues:Array(String)}} "
            f"ORDER BY trade_id DESC LIMIT {int(recent_ids)} BY exchange, symbol) GROUP BY exchange, symbol",
            {"venues": windowed},
        ):
            cursor = state.cursors.setdefault(exchange, {}).setdefault(symbol, SymbolCursor())
            cursor.recent = list(ids)
    for row in store.rows(
        f"SELECT gap_id, exchange, symbol, first_id, last_id, toUnixTimestamp64Nano(ts_from), "
        f"toUnixTimestamp64Nano(ts_to), toUnixTimestamp64Nano(detected_at), toString(kind) "
        f"FROM {DATABASE}.feed_gaps FINAL WHERE outcome = 'pending'"
    ):
        gap_id, exchange, symbol, first, last, ts_from, ts_to, detected, kind = row
        holes: list[tuple[int, int]] = []
        if kind == "ids":
            present = [r[0] for r in store.rows(
                f"SELECT trade_id FROM {DATABASE}.silver_trades WHERE exchange = {{e:String}} "
                f"AND symbol = {{s:String}} AND trade_id BETWEEN {{a:UInt64}} AND {{b:UInt64}}",
                {"e": exchange, "s": symbol, "a": first, "b": last})]  # fmt: skip
            holes = _holes(first, last, present)
        missing = sum(hi - lo + 1 for lo, hi in holes)
        gap = Gap(gap_id, exchange, symbol, first, last, ts_from, ts_to, detected, 0, PENDING, missing, 0, kind)
        state.pending.setdefault(exchange, []).append(ResumedGap(gap, holes))
    if state.pending:
        log.info("resuming %d gap repairs that were pending at the last stop",
                 sum(len(v) for v in state.pending.values()))  # fmt: skip
    return state


def last_sequence(store: HotStore) -> int:
    """Return the highest ingest sequence in any hot table (0 for an empty store)."""
    parts = [f"SELECT max(ingest_seq) AS s FROM {DATABASE}.{bronze_table(v)}" for v in VENUE_NAMES]
    parts.append(f"SELECT max(ingest_seq) AS s FROM {DATABASE}.silver_trades")
    (value,) = store.rows(f"SELECT max(s) FROM ({' UNION ALL '.join(parts)})")[0]
    return int(value or 0)
