"""What K2 holds of each instrument: trades, first and last, across both tiers; and per day,
which tiers hold it and whether it is complete.

A day of one market is complete when every gap detected in it was repaired and the archive holds
what the hot store holds (or, for a day retention emptied, held: retention deletes only what the
archive holds, archive/retention.py). Otherwise its status says what is missing:
- `gaps open`: a gap of the day is pending, partial, unrecoverable or suspicious;
- `archiving`: hot holds rows the archive does not have yet (the offload runs every 15 minutes);
- `differs`: the archive holds rows hot does not, while hot still holds the day (reconcile says
  more).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import pyarrow.compute as pc

from k2.hotstore.expired import expired_days
from k2.hotstore.schema import DATABASE, SILVER_TABLE
from k2.hotstore.store import HotStore
from k2.instruments import Instruments, catalog
from k2.query.tiers import DAY_NS, Archive, Filter
from k2.timeutil import ns_to_rfc3339

SYMBOL_KEYS = ("exchange", "symbol", "canonical_symbol", "trades", "first_trade", "last_trade")
DAY_KEYS = (
    "exchange",
    "canonical_symbol",
    "day",
    "tiers",
    "hot_trades",
    "archived_trades",
    "open_gaps",
    "complete",
    "status",
)
Market = tuple[str, str]  # (exchange, canonical_symbol)


def _hot_days(store: HotStore, f: Filter) -> dict[tuple[str, str, int], tuple[int, int, int]]:
    """(exchange, canonical_symbol, day) -> (trades, first ns, last ns) in hot."""
    where, params = f.sql("ts_event")
    return {
        (str(e), str(s), int(d)): (int(n), int(lo), int(hi))
        for e, s, d, n, lo, hi in store.rows(
            "SELECT exchange, canonical_symbol, toUInt32(toDate(ts_event)), count(), "
            "toUnixTimestamp64Nano(min(ts_event)), toUnixTimestamp64Nano(max(ts_event)) "
            f"FROM {DATABASE}.{SILVER_TABLE}{where} GROUP BY 1, 2, 3",
            params,
        )
    }


def _cold_days(lake: Archive, f: Filter) -> dict[tuple[str, str, int], tuple[int, int, int]]:
    """The same from the archive: a scan of three columns."""
    from k2.archive.tables import BY_NAME

    data = (
        lake.table(BY_NAME[SILVER_TABLE])
        .scan(
            row_filter=f.iceberg("ts_event"),
            selected_fields=("exchange", "canonical_symbol", "ts_event_ns"),
        )
        .to_arrow()
    )
    if not len(data):
        return {}
    ns = data.column("ts_event_ns")
    keep = pc.and_(
        pc.greater_equal(ns, f.start_ns if f.start_ns is not None else -(2**63)),
        pc.less(ns, f.end_ns if f.end_ns is not None else 2**63 - 1),
    )
    data = data.filter(keep)
    data = data.append_column("day", pc.divide(data.column("ts_event_ns"), DAY_NS))
    grouped = data.group_by(["exchange", "canonical_symbol", "day"]).aggregate(
        [("ts_event_ns", "count"), ("ts_event_ns", "min"), ("ts_event_ns", "max")]
    )
    return {
        (r["exchange"], r["canonical_symbol"], int(r["day"])): (
            int(r["ts_event_ns_count"]),
            int(r["ts_event_ns_min"]),
            int(r["ts_event_ns_max"]),
        )
        for r in grouped.to_pylist()
    }


def _open_gaps(
    store: HotStore, instruments: Instruments, f: Filter
) -> dict[tuple[str, str, int], int]:
    """Gaps not (yet) wholly repaired, per market and the day they start in."""
    canonical = {(i.venue, i.symbol): i.canonical for i in catalog(instruments)}
    where = " WHERE outcome != 'repaired'"
    params: dict[str, Any] = {}
    if f.venue:
        where += " AND exchange = {venue:String}"
        params["venue"] = f.venue
    out: dict[tuple[str, str, int], int] = defaultdict(int)
    for exchange, symbol, day, n in store.rows(
        "SELECT exchange, symbol, toUInt32(toDate(if(ts_from > toDateTime64(0, 9), ts_from, "
        f"detected_at))) AS d, count() FROM {DATABASE}.feed_gaps FINAL{where} GROUP BY 1, 2, 3",
        params,
    ):
        market = canonical.get((str(exchange), str(symbol)), str(symbol))
        if f.symbol and market != f.symbol.upper():
            continue
        if f.start_ns is not None and (int(day) + 1) * DAY_NS <= f.start_ns:
            continue
        if f.end_ns is not None and int(day) * DAY_NS >= f.end_ns:
            continue
        out[str(exchange), market, int(day)] += int(n)
    return out


def days(
    store: HotStore, lake: Archive | None, instruments: Instruments, f: Filter
) -> list[dict[str, Any]]:
    """One row per market and day in the filter's range that either tier holds, or with a gap."""
    hot = _hot_days(store, f)
    cold = _cold_days(lake, f) if lake is not None else {}
    gaps = _open_gaps(store, instruments, f)
    expired = expired_days(store, SILVER_TABLE)
    out = []
    for key in sorted(set(hot) | set(cold) | set(gaps), key=lambda k: (k[2], k[0], k[1])):
        exchange, market, day = key
        h, c, g = hot.get(key, (0, 0, 0))[0], cold.get(key, (0, 0, 0))[0], gaps.get(key, 0)
        if g:
            status = "gaps open"
        elif day in expired or h == c:
            status = "complete"
        elif h > c:
            status = "archiving"
        else:
            status = "differs"
        tiers = "+".join(t for t, n in (("hot", h), ("archive", c)) if n) or "none"
        out.append(
            dict(
                zip(
                    DAY_KEYS,
                    (
                        exchange,
                        market,
                        dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + day).isoformat(),
                        tiers,
                        h,
                        c,
                        g,
                        status == "complete",
                        status,
                    ),
                    strict=True,
                )
            )
        )
    return out


def symbols(
    store: HotStore, lake: Archive | None, instruments: Instruments
) -> list[dict[str, Any]]:
    """Every instrument in the file with its trades, first and last trade, in both tiers; then
    markets stored that the file no longer lists, with an empty venue symbol.

    A day retention emptied counts the archive's rows plus hot's rows the archive lacks (trades
    that arrived late into it); every other day counts hot's rows.
    """
    expired = expired_days(store, SILVER_TABLE)
    counted = list(_hot_days(store, Filter()).items())
    if lake is not None and expired:
        counted = [(k, v) for k, v in counted if k[2] not in expired]
        span = Filter(start_ns=min(expired) * DAY_NS, end_ns=(max(expired) + 1) * DAY_NS)
        counted += [(k, v) for k, v in _cold_days(lake, span).items() if k[2] in expired]
        counted += list(_unarchived(store, lake, expired).items())
    stats: dict[Market, list[int]] = {}
    for (exchange, market, _), (n, lo, hi) in counted:
        s = stats.setdefault((exchange, market), [0, lo, hi])
        s[0] += n
        s[1], s[2] = min(s[1], lo), max(s[2], hi)
    out: list[tuple[str, str, str, int, int, int]] = []
    for item in catalog(instruments):
        n, lo, hi = stats.pop((item.venue, item.canonical), [0, 0, 0])
        out.append((item.venue, item.symbol, item.canonical, n, lo, hi))
    for (exchange, market), (n, lo, hi) in sorted(stats.items()):
        out.append((exchange, "", market, n, lo, hi))
    return [
        dict(
            zip(
                SYMBOL_KEYS,
                (v, s, c, n, ns_to_rfc3339(lo) if lo else "", ns_to_rfc3339(hi) if hi else ""),
                strict=True,
            )
        )
        for v, s, c, n, lo, hi in out
    ]


def _unarchived(
    store: HotStore, lake: Archive, days: set[int]
) -> dict[tuple[str, str, int], tuple[int, int, int]]:
    """Hot's rows of `days` that the archive does not hold yet, by its per-writer marks."""
    from k2.archive import marks
    from k2.archive.tables import BY_NAME, WATERMARK, WRITER_MARKS

    held = marks.upto(marks.read(lake.table(BY_NAME[SILVER_TABLE]), WRITER_MARKS, WATERMARK))
    return {
        (str(e), str(s), int(d)): (int(n), int(lo), int(hi))
        for e, s, d, n, lo, hi in store.rows(
            "SELECT exchange, canonical_symbol, toUInt32(toDate(ts_event)) AS d, count(), "
            "toUnixTimestamp64Nano(min(ts_event)), toUnixTimestamp64Nano(max(ts_event)) "
            f"FROM {DATABASE}.{SILVER_TABLE} WHERE d IN {{days:Array(UInt32)}} AND NOT ({held}) "
            "GROUP BY 1, 2, 3",
            {"days": sorted(days)},
        )
    }
