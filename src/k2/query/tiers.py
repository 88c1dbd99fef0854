"""One read path over both tiers: the hot store where it holds the data, Iceberg where it doesn't.

Trades. Hot retention empties a day of silver only once the archive holds every row of it, and
records the day in `k2.hot_expired` before it deletes (archive/retention.py). A read takes hot
first, then the recorded days, then the archive's rows of those days in its newest snapshot, and
keeps each trade once by its key (exchange, symbol, trade_id). That is exact while the seam moves:
- a trade hot held when it was read is served from hot;
- a trade hot no longer held had been deleted, so it was archived before that, its day was
  recorded before that, and the archive read (which comes later) has it;
- a trade in both is kept once: the tiers hold the same values (the offload is exact).

Candles are read in query/candle_tiers.py. Both tiers give the same Arrow schema (query/frames.py),
so the text of a row never says which tier it came from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from k2.errors import InputError
from k2.hotstore import queries
from k2.hotstore.expired import expired_days
from k2.hotstore.schema import DATABASE, SILVER_TABLE
from k2.hotstore.store import HotStore
from k2.query import cold_files
from k2.query.frames import (
    CANDLE_SCHEMA,
    TRADE_KEY,
    TRADE_ORDER,
    TRADE_SCHEMA,
    conform,
)

if TYPE_CHECKING:  # the archive's modules load PyIceberg: only when a read needs the archive
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

    from k2.archive.tables import ArchiveTable

DAY_NS = 86_400 * 1_000_000_000
MAX_LIMIT = queries.MAX_LIMIT  # rows in one answer; larger reads stream (query/stream.py)


class Archive(Protocol):
    """What a read needs of the archive (archive.lake.Lake): a table, freshly loaded."""

    def table(self, spec: ArchiveTable) -> Table: ...


@dataclass(frozen=True)
class Filter:
    """What to read: a venue, a canonical symbol, event times in [start_ns, end_ns)."""

    venue: str | None = None
    symbol: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None

    def between(self, start_ns: int | None, end_ns: int | None) -> Filter:
        """This filter narrowed to [start_ns, end_ns) (None: not narrowed on that side)."""
        lo, hi = self.start_ns, self.end_ns
        if start_ns is not None:
            lo = start_ns if lo is None else max(lo, start_ns)
        if end_ns is not None:
            hi = end_ns if hi is None else min(hi, end_ns)
        return replace(self, start_ns=lo, end_ns=hi)

    def sql(self, column: str, epoch_ns: bool = False) -> tuple[str, dict[str, Any]]:
        """A WHERE clause over `column` (a DateTime64; with `epoch_ns`, integer nanoseconds since
        the epoch) and its parameters."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if self.venue:
            where.append("exchange = {venue:String}")
            params["venue"] = self.venue
        if self.symbol:
            where.append("canonical_symbol = {symbol:String}")
            params["symbol"] = self.symbol.upper()
        for key, op, value in (("start", ">=", self.start_ns), ("end", "<", self.end_ns)):
            if value is not None:
                bound = (
                    f"{{{key}:Int64}}"
                    if epoch_ns
                    else f"fromUnixTimestamp64Nano({{{key}:Int64}}, 'UTC')"
                )
                where.append(f"{column} {op} {bound}")
                params[key] = value
        return (" WHERE " + " AND ".join(where)) if where else "", params

    def iceberg(self, column: str) -> BooleanExpression:
        """The same filter for an Iceberg scan, to the microsecond around the edges (the exact
        nanosecond bounds are applied to the rows read)."""
        from pyiceberg.expressions import AlwaysTrue, And, EqualTo, GreaterThanOrEqual, LessThan

        expr: BooleanExpression = AlwaysTrue()
        # pyiceberg's predicates take (term, literal) positionally; the pydantic mypy plugin reads
        # their model fields instead and expects other arguments.
        if self.venue:
            expr = And(expr, EqualTo("exchange", self.venue))  # type: ignore[call-arg]
        if self.symbol:
            expr = And(expr, EqualTo("canonical_symbol", self.symbol.upper()))  # type: ignore[call-arg]
        if self.start_ns is not None:
            expr = And(expr, GreaterThanOrEqual(column, _iso(self.start_ns // 1000)))  # type: ignore[call-arg]
        if self.end_ns is not None:
            expr = And(expr, LessThan(column, _iso(-(-self.end_ns // 1000))))  # type: ignore[call-arg]
        return expr


def _iso(us: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)).isoformat()


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(
            f"limit must be between 1 and {MAX_LIMIT:,} (use k2 export for more), got {limit}"
        )
    return limit


# -- trades ---------------------------------------------------------------------------------------
_HOT_TRADES = (
    "SELECT exchange, symbol, canonical_symbol, toInt64(trade_id) AS trade_id, price, amount, "
    "toString(taker_side) AS taker_side, toUnixTimestamp64Nano(ts_event) AS event_ns, "
    f"toUnixTimestamp64Nano(ts_recv) AS recv_ns FROM {DATABASE}.{SILVER_TABLE}"
)  # (an alias named like a column would stand for it in WHERE too: ClickHouse aliases are global)


TradeKey = tuple[int, str, str, int]  # (ts_event ns, exchange, symbol, trade_id): the order


def hot_trades(
    store: HotStore, f: Filter, limit: int | None = None, before: TradeKey | None = None
) -> pa.Table:
    """Silver's trades in hot: the newest `limit` (of those ordered before `before`), or all of
    them, in time order."""
    where, params = f.sql("ts_event")
    if before is not None:
        where = (where + " AND " if where else " WHERE ") + (
            "(ts_event, exchange, symbol, trade_id) < (fromUnixTimestamp64Nano({bt:Int64}, 'UTC'), "
            "{be:String}, {bs:String}, {bi:Int64})"
        )
        params |= dict(zip(("bt", "be", "bs", "bi"), before, strict=True))
    if limit is None:  # every row: sorted here (_in_time_order)
        return _in_time_order(store.query_arrow(f"{_HOT_TRADES}{where}", params))
    sql = (
        f"{_HOT_TRADES}{where} ORDER BY ts_event DESC, exchange DESC, symbol DESC, "
        f"trade_id DESC LIMIT {int(limit)}"
    )
    data = store.query_arrow(sql, params).rename_columns(TRADE_SCHEMA.names)
    return conform(data, TRADE_SCHEMA)


def hot_trades_where(store: HotStore, condition: str) -> pa.Table:
    """Silver's trades in hot matching an SQL condition (on its columns), in time order."""
    return _in_time_order(store.query_arrow(f"{_HOT_TRADES} WHERE {condition}"))


def _in_time_order(data: pa.Table) -> pa.Table:
    """Hot's rows in the trade schema and TRADE_ORDER. Sorted by Arrow rather than by an ORDER BY:
    ClickHouse moves every column through its sort, and a day of trades (1.7 million rows) read
    in 1.27 s sorted against 0.46 s unsorted plus 0.13 s to sort here (bench/query.py's day)."""
    return conform(data.rename_columns(TRADE_SCHEMA.names), TRADE_SCHEMA).sort_by(TRADE_ORDER)


def _before(table: pa.Table, key: TradeKey) -> pa.Table:
    """The rows ordered before `key`."""
    t, e, s, i = key
    ts = pc.cast(table.column("ts_event"), pa.int64())
    ex, sym, tid = table.column("exchange"), table.column("symbol"), table.column("trade_id")
    mask = pc.or_(
        pc.less(ts, t),
        pc.and_(
            pc.equal(ts, t),
            pc.or_(
                pc.less(ex, e),
                pc.and_(
                    pc.equal(ex, e),
                    pc.or_(pc.less(sym, s), pc.and_(pc.equal(sym, s), pc.less(tid, i))),
                ),
            ),
        ),
    )
    return table.filter(mask)


def last_key(table: pa.Table, row: int) -> TradeKey:
    """Row `row`'s place in the order."""
    return (
        int(pc.cast(table.column("ts_event"), pa.int64())[row].as_py()),
        str(table.column("exchange")[row].as_py()),
        str(table.column("symbol")[row].as_py()),
        int(table.column("trade_id")[row].as_py()),
    )


def hot_count(store: HotStore, f: Filter) -> int:
    """How many trades hot holds matching `f` (a primary-key read)."""
    where, params = f.sql("ts_event")
    return int(store.rows(f"SELECT count() FROM {DATABASE}.{SILVER_TABLE}{where}", params)[0][0])


def first_trade(store: HotStore, lake: Archive | None, f: Filter) -> int | None:
    """The earliest time (ns) at or after the filter's start where a trade of it may be: hot's
    first, or the start of a day retention emptied (the archive's share), if earlier."""
    where, params = f.sql("ts_event")
    ((count, first),) = store.rows(
        f"SELECT count(), toUnixTimestamp64Nano(min(ts_event)) FROM {DATABASE}.{SILVER_TABLE}"
        f"{where}",
        params,
    )
    found = int(first) if count else None
    if lake is not None and (days := _expired(store, f)):
        day_start = days[0] * DAY_NS
        if f.start_ns is not None:
            day_start = max(day_start, f.start_ns)
        found = day_start if found is None else min(found, day_start)
    return found


def cold_trades(lake: Archive, f: Filter, store: HotStore | None = None) -> pa.Table:
    """Silver's trades in the archive's newest snapshot, exactly within the filter; read by the
    hot store's engine where it can (query/cold_files.py), else by pyiceberg."""
    from k2.archive.tables import BY_NAME

    table = lake.table(BY_NAME[SILVER_TABLE])
    fields = ["exchange", "symbol", "canonical_symbol", "trade_id", "price", "amount"]
    fields += ["taker_side", "ts_event_ns", "ts_recv_ns"]
    equal = {"exchange": f.venue} if f.venue else {}
    if f.symbol:
        equal["canonical_symbol"] = f.symbol.upper()
    paths = cold_files.plan(store, table, equal, {"ts_event_ns": (f.start_ns, f.end_ns)})
    read = None
    if store is not None and paths is not None:
        where, params = f.sql("ts_event_ns", epoch_ns=True)
        read = cold_files.read_files(
            store, paths, fields, where.removeprefix(" WHERE ") or "1", params
        )
    if read is None:
        scan = table.scan(row_filter=f.iceberg("ts_event"), selected_fields=tuple(fields))
        scanned = scan.to_arrow()
    else:
        scanned = read
    renamed = {"ts_event_ns": "ts_event", "ts_recv_ns": "ts_recv"}
    scanned = scanned.rename_columns([renamed.get(n, n) for n in scanned.column_names])
    scanned = conform(scanned, TRADE_SCHEMA)
    if read is None:  # the scan's filter is to the microsecond: the exact edges here
        scanned = within(scanned, "ts_event", f)
    return scanned.sort_by(TRADE_ORDER)


def within(table: pa.Table, column: str, f: Filter) -> pa.Table:
    if not len(table) or (f.start_ns is None and f.end_ns is None):
        return table
    ns = pc.cast(table.column(column), pa.int64())
    keep = pc.greater_equal(ns, f.start_ns) if f.start_ns is not None else None
    if f.end_ns is not None:
        below = pc.less(ns, f.end_ns)
        keep = below if keep is None else pc.and_(keep, below)
    return table.filter(keep)


def _expired(store: HotStore, f: Filter) -> list[int]:
    """The days (since 1970) in the filter's range that retention has emptied in silver."""
    first = None if f.start_ns is None else f.start_ns // DAY_NS
    last = None if f.end_ns is None else (f.end_ns - 1) // DAY_NS
    return sorted(
        d
        for d in expired_days(store, SILVER_TABLE)
        if (first is None or d >= first) and (last is None or d <= last)
    )


def merge_unique(
    parts: list[pa.Table], key: tuple[str, ...], order: list[tuple[str, str]]
) -> pa.Table:
    """The parts as one table, each key once, in `order`."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return TRADE_SCHEMA.empty_table() if "trade_id" in key else CANDLE_SCHEMA.empty_table()
    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts).sort_by([(k, "ascending") for k in key])
    n = len(table)
    if n > 1:
        same = None
        for k in key:
            column = table.column(k)
            eq = pc.equal(column.slice(1), column.slice(0, n - 1))
            same = eq if same is None else pc.and_(same, eq)
        assert same is not None
        keep = pa.concat_arrays([pa.array([True]), pc.invert(same).combine_chunks()])
        table = table.filter(keep)
    return table.sort_by(order)


def trades(
    store: HotStore,
    lake: Archive | None,
    f: Filter,
    limit: int = 100,
    before: TradeKey | None = None,
) -> pa.Table:
    """The newest `limit` trades matching `f` (of those ordered before `before`: the next page
    back), oldest first, from hot and then the archive."""
    if before is not None:
        f = f.between(None, before[0] + 1)
    merged = hot_trades(store, f, check_limit(limit), before).sort_by(TRADE_ORDER)
    if lake is None:
        return merged
    for day in reversed(_expired(store, f)):  # newest first: stop once older days cannot count
        if len(merged) >= limit and _first_ns(merged, "ts_event") >= (day + 1) * DAY_NS:
            break
        cold = cold_trades(lake, f.between(day * DAY_NS, (day + 1) * DAY_NS), store)
        if before is not None:
            cold = _before(cold, before)
        merged = merge_unique([merged, cold], TRADE_KEY, TRADE_ORDER)
        merged = merged.slice(max(0, len(merged) - limit))
    return merged


def trades_between(store: HotStore, lake: Archive | None, f: Filter) -> pa.Table:
    """Every trade matching `f` (mind its range: all of it is in memory), in time order."""
    hot = hot_trades(store, f)
    if lake is None:
        return hot
    days = _expired(store, f)
    if not days:
        return hot
    # one scan over the recorded days' span; of it, the rows of those days
    cold = cold_trades(lake, f.between(days[0] * DAY_NS, (days[-1] + 1) * DAY_NS), store)
    if len(days) < days[-1] - days[0] + 1:
        day = pc.cast(pc.divide(pc.cast(cold.column("ts_event"), pa.int64()), DAY_NS), pa.int64())
        cold = cold.filter(pc.is_in(day, pa.array(days, pa.int64())))
    return merge_unique([hot, cold], TRADE_KEY, TRADE_ORDER)


def _first_ns(table: pa.Table, column: str) -> int:
    return int(pc.cast(table.column(column), pa.int64())[0].as_py())
