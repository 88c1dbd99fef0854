"""Where the feeds resume after a restart (even after kill -9), read back from the store.

Silver is the truth: the cursors are its highest ids, and a pending gap's holes are the ids of its
range silver still lacks. A gap record is written with or after the trade that revealed it, so
after a crash a hole can exist in silver with no record at all (the record was in the batch the
crash lost, or an insert was cut between two of its parts). `load_resume(after_crash=True)` scans
the recently written ids of venues with contiguous ids for such holes and returns them as new gaps.
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
# a 50,000-row batch takes well under a second); a minute is ample, and bounds the scan after a
# crash in a busy market.
CRASH_SCAN_US = 60 * 1_000_000
# Their neighbours are read from this far back in event time; an older neighbour (a quiet
# symbol) is looked up on its own.
CRASH_SCAN_MARGIN_NS = 60 * 1_000_000_000


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
    """Return holes among silver's recently written ids that no gap record covers, as new gaps."""
    if not venues:
        return []
    params: dict[str, object] = {"venues": venues}
    ((top,),) = store.rows(f"SELECT max(ingest_seq) FROM {DATABASE}.silver_trades "
                           "WHERE exchange IN {venues:Array(String)}", params)  # fmt: skip
    if not top:
        return []
    params["since"] = max(int(top) - CRASH_SCAN_US, 0)
    ((oldest,),) = store.rows(
        f"SELECT toUnixTimestamp64Nano(min(ts_event)) FROM {DATABASE}.silver_trades "
        "WHERE exchange IN {venues:Array(String)} AND ingest_seq >= {since:UInt64}", params)  # fmt: skip
    params["from"] = max(int(oldest) - CRASH_SCAN_MARGIN_NS, 0)
    # Each id with its predecessor in the scan: a jump is a hole if either side was written
    # recently. A recent id with no predecessor in the scan (prev_id 0) needs a closer look.
    jumps = store.rows(
        "SELECT exchange, symbol, canonical_symbol, prev_id, trade_id, prev_ts, ts FROM ("
        " SELECT exchange, symbol, canonical_symbol, trade_id, ingest_seq, toUnixTimestamp64Nano(ts_event) AS ts,"
        "  lagInFrame(trade_id, 1, 0) OVER w AS prev_id, lagInFrame(ts, 1, 0) OVER w AS prev_ts,"
        "  lagInFrame(ingest_seq, 1, 0) OVER w AS prev_seq"
        f" FROM {DATABASE}.silver_trades WHERE exchange IN {{venues:Array(String)}}"
        "  AND ts_event >= fromUnixTimestamp64Nano({from:Int64}, 'UTC')"
        " WINDOW w AS (PARTITION BY exchange, symbol ORDER BY trade_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))"
        " WHERE trade_id > prev_id + 1 AND (ingest_seq >= {since:UInt64} OR prev_seq >= {since:UInt64})"
        " ORDER BY exchange, symbol, trade_id", params)  # fmt: skip
    holes = []
    for exchange, symbol, canonical, prev_id, trade_id, prev_ts, ts in jumps:
        if prev_id == 0:  # its predecessor is older than the scan (or it is the symbol's first trade)
            # The last trade before the scan, read backwards along silver's sorting key (these
            # venues' ids rise with time), not a scan of the symbol's whole history.
            before = store.rows(
                f"SELECT trade_id, toUnixTimestamp64Nano(ts_event) FROM {DATABASE}.silver_trades "
                "WHERE canonical_symbol = {c:String} AND exchange = {e:String} AND symbol = {s:String} "
                "AND ts_event < fromUnixTimestamp64Nano({from:Int64}, 'UTC') ORDER BY ts_event DESC, trade_id DESC LIMIT 1",
                {"c": canonical, "e": exchange, "s": symbol, "from": params["from"]})  # fmt: skip
            if not before or before[0][0] + 1 >= trade_id:
                continue
            prev_id, prev_ts = before[0]
        holes.append((exchange, symbol, prev_id + 1, trade_id - 1, prev_ts, ts))
    if not holes:
        return []
    recorded: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for exchange, symbol, first, last in store.rows(
        f"SELECT exchange, symbol, first_id, last_id FROM {DATABASE}.feed_gaps FINAL "
        "WHERE kind = 'ids' AND exchange IN {venues:Array(String)}", params):  # fmt: skip
        recorded.setdefault((exchange, symbol), []).append((first, last))
    found = []
    for exchange, symbol, lo, hi, ts_from, ts_to in holes:
        for a, b in _subtract(lo, hi, recorded.get((exchange, symbol), [])):
            found.append(id_gap(exchange, symbol, a, b, ts_from, ts_to))
    return found


def load_resume(store: HotStore, recent_ids: int, after_crash: bool = False) -> ResumeState:
    """Return per-venue cursors from silver and the gaps still to repair.

    After a crash (`after_crash`), that includes holes in silver that no gap record covers.
    """
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
    if after_crash:
        contiguous = [v for v in VENUE_NAMES if make_adapter(v).contiguous_ids]
        found = unrecorded_holes(store, contiguous)
        for gap in found:
            state.pending.setdefault(gap.exchange, []).append(ResumedGap(gap, [(gap.first_id, gap.last_id)], False))
        if found:
            log.warning("after the unclean stop, %d holes in silver had no gap record (lost with the last "
                        "batch); repairing them", len(found))  # fmt: skip
    return state


def last_sequence(store: HotStore) -> int:
    """Return the highest ingest sequence in any hot table (0 for an empty store)."""
    parts = [f"SELECT max(ingest_seq) AS s FROM {DATABASE}.{bronze_table(v)}" for v in VENUE_NAMES]
    parts.append(f"SELECT max(ingest_seq) AS s FROM {DATABASE}.silver_trades")
    (value,) = store.rows(f"SELECT max(s) FROM ({' UNION ALL '.join(parts)})")[0]
    return int(value or 0)
