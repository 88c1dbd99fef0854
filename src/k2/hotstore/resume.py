"""Where the feeds resume after a restart (even after kill -9), read back from the store.

Silver is the truth: the cursors are its highest ids, and a pending gap's holes are the ids of its
range silver still lacks. (Holes a crash left without a gap record are recorded by recovery.py.)
"""

from __future__ import annotations

import logging

from k2.exchanges import VENUE_NAMES, make_adapter
from k2.hotstore.schema import DATABASE, bronze_table
from k2.hotstore.store import HotStore
from k2.ingest.state import ResumedGap, ResumeState, SymbolCursor, holes_in
from k2.records import PENDING, Gap, GapKind

log = logging.getLogger(__name__)


def load_resume(store: HotStore, recent_ids: int) -> ResumeState:
    """Return per-venue cursors from silver and the gaps that were still pending."""
    state = ResumeState()
    # silver's key starts with the canonical symbol: a read of one symbol's ids names it
    canonical: dict[tuple[str, str], str] = {}
    for exchange, symbol, canon, high, high_ts in store.rows(
        "SELECT exchange, symbol, any(canonical_symbol), max(trade_id), "
        "toUnixTimestamp64Nano(argMax(ts_event, trade_id)) "
        f"FROM {DATABASE}.silver_trades GROUP BY exchange, symbol"
    ):
        state.cursors.setdefault(exchange, {})[symbol] = SymbolCursor(high, high_ts)
        canonical[exchange, symbol] = canon
    windowed = [v for v in VENUE_NAMES if not make_adapter(v).contiguous_ids]
    if windowed:
        # Venues deduplicated by a window of recent ids need that window back.
        for exchange, symbol, ids in store.rows(
            "SELECT exchange, symbol, groupArray(trade_id) "
            "FROM (SELECT exchange, symbol, trade_id "
            f"FROM {DATABASE}.silver_trades WHERE exchange IN {{venues:Array(String)}} "
            f"ORDER BY trade_id DESC LIMIT {int(recent_ids)} BY exchange, symbol) "
            "GROUP BY exchange, symbol",
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
        kind = GapKind(kind)
        if kind == GapKind.IDS and (exchange, symbol) not in canonical:
            holes = [(first, last)]  # silver holds nothing of this symbol
        elif kind == GapKind.IDS:
            present = [
                r[0]
                for r in store.rows(
                    f"SELECT trade_id FROM {DATABASE}.silver_trades "
                    "WHERE canonical_symbol = {c:String} AND exchange = {e:String} "
                    "AND symbol = {s:String} AND trade_id BETWEEN {a:UInt64} AND {b:UInt64}",
                    {
                        "c": canonical[exchange, symbol],
                        "e": exchange,
                        "s": symbol,
                        "a": first,
                        "b": last,
                    },
                )
            ]
            holes = holes_in(first, last, present)
        missing = sum(hi - lo + 1 for lo, hi in holes)
        gap = Gap(
            gap_id,
            exchange,
            symbol,
            first,
            last,
            ts_from,
            ts_to,
            detected,
            0,
            PENDING,
            missing,
            0,
            kind,
        )
        state.pending.setdefault(exchange, []).append(ResumedGap(gap, holes))
    if state.pending:
        log.info(
            "resuming %d gap repairs that were pending at the last stop",
            sum(len(v) for v in state.pending.values()),
        )
    return state


def last_sequence(store: HotStore) -> int:
    """Return the highest ingest sequence in any hot table (0 for an empty store)."""
    parts = [f"SELECT max(ingest_seq) AS s FROM {DATABASE}.{bronze_table(v)}" for v in VENUE_NAMES]
    parts.append(f"SELECT max(ingest_seq) AS s FROM {DATABASE}.silver_trades")
    (value,) = store.rows(f"SELECT max(s) FROM ({' UNION ALL '.join(parts)})")[0]
    return int(value or 0)
