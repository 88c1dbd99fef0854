"""The read side of the hot store: gaps, rejects and instruments, and the candle merge
(trades and candles are read across both tiers by query/tiers.py)."""

from __future__ import annotations

from typing import Any

from k2.errors import InputError
from k2.hotstore.schema import DATABASE, TIMEFRAME_BY_NAME
from k2.hotstore.store import HotStore
from k2.records import Outcome
from k2.timeutil import ns_to_rfc3339

MAX_LIMIT = 1_000_000


def _filters(
    venue: str | None, symbol: str | None, column: str, start_ns: int | None, end_ns: int | None
) -> tuple[str, dict[str, Any]]:
    where: list[str] = []
    params: dict[str, Any] = {}
    if venue:
        where.append("exchange = {venue:String}")
        params["venue"] = venue
    if symbol:
        where.append("canonical_symbol = {symbol:String}")
        params["symbol"] = symbol.upper()
    if start_ns is not None:
        where.append(f"{column} >= fromUnixTimestamp64Nano({{start:Int64}}, 'UTC')")
        params["start"] = start_ns
    if end_ns is not None:
        where.append(f"{column} < fromUnixTimestamp64Nano({{end:Int64}}, 'UTC')")
        params["end"] = end_ns
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _records(
    rows: list[tuple[Any, ...]], keys: tuple[str, ...], times: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows fetched newest first, returned oldest first as dicts; `times` (ns)
    as RFC 3339 ("" for 0)."""
    out = []
    for row in reversed(rows):
        item = dict(zip(keys, row, strict=True))
        for key in times:
            item[key] = ns_to_rfc3339(item[key]) if item[key] else ""
        out.append(item)
    return out


def timeframe(name: str) -> str:
    if name not in TIMEFRAME_BY_NAME:
        raise InputError(f"unknown timeframe {name!r}; choose from {', '.join(TIMEFRAME_BY_NAME)}")
    return name


# The same merge as the candles_<tf> views in ddl/006_ohlcv.sql, run on the table itself: the
# view costs ~5 ms of analysis per query. tests/integration/test_hotstore.py keeps the two equal.
CANDLE_MERGE = (
    ("open", "argMinMerge(open)"),
    ("high", "max(high)"),
    ("low", "min(low)"),
    ("close", "argMaxMerge(close)"),
    ("volume", "sum(volume)"),
    ("quote_volume", "sum(quote_volume)"),
    ("trade_count", "sum(trade_count)"),
    ("taker_buy_volume", "sum(taker_buy_volume)"),
    ("vwap", "toDecimal128(divideDecimal(sum(quote_volume), sum(volume), 18), 18)"),
)


def merged_candles_sql(tf: str, where: str, order: str, limit: str = "") -> str:
    """SELECT finished candles of one timeframe from its table."""
    values = ", ".join(expr for _, expr in CANDLE_MERGE)
    return (
        f"SELECT exchange, canonical_symbol, '{timeframe(tf)}', toUnixTimestamp(window_start), "
        f"{values} "
        f"FROM {DATABASE}.ohlcv_{tf}{where} GROUP BY exchange, canonical_symbol, window_start "
        f"ORDER BY {order}{limit}"
    )


GAP_KEYS = (
    "exchange",
    "symbol",
    "kind",
    "first_id",
    "last_id",
    "missing",
    "recovered",
    "outcome",
    "detected_at",
    "resolved_at",
    "gap_id",
    "detail",
)
GAP_OUTCOMES = tuple(o.value for o in Outcome)
REJECT_KEYS = ("exchange", "ts_recv", "reason", "conn_id", "raw")


def gap_outcome(outcome: str | None) -> str | None:
    if outcome is not None and outcome not in GAP_OUTCOMES:
        raise InputError(f"unknown gap outcome {outcome!r}; choose from {', '.join(GAP_OUTCOMES)}")
    return outcome


def gaps(
    store: HotStore,
    venue: str | None = None,
    outcome: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The latest gaps detected (each in its latest state), oldest first."""
    where, params = _filters(venue, None, "detected_at", start_ns, end_ns)
    if gap_outcome(outcome) is not None:
        where = (where + " AND" if where else " WHERE") + f" outcome = '{outcome}'"
    rows = store.rows(
        "SELECT exchange, symbol, toString(kind), first_id, last_id, missing, recovered, "
        "toString(outcome), toUnixTimestamp64Nano(detected_at), "
        "toUnixTimestamp64Nano(resolved_at), gap_id, detail "
        f"FROM {DATABASE}.feed_gaps FINAL{where} ORDER BY detected_at DESC LIMIT {_limit(limit)}",
        params,
    )
    return _records(rows, GAP_KEYS, ("detected_at", "resolved_at"))


def rejects(
    store: HotStore,
    venue: str | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The latest quarantined messages with why they were rejected (raw text cut to 500 bytes),
    oldest first."""
    where, params = _filters(venue, None, "ts_recv", start_ns, end_ns)
    rows = store.rows(
        "SELECT exchange, toUnixTimestamp64Nano(ts_recv), reason, conn_id, "
        "toValidUTF8(substring(raw, 1, 500)) "
        f"FROM {DATABASE}.rejects{where} ORDER BY ts_recv DESC LIMIT {_limit(limit)}",
        params,
    )
    return _records(rows, REJECT_KEYS, ("ts_recv",))
