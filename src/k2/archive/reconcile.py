"""Reconcile: per table and day, does the archive hold exactly what the hot store holds?

The archive should hold exactly the hot rows at or below its watermark (trade tables), or the
windows before it (candles). That is what is compared, per day, for every day hot still holds
whole (none of it expired by TTL), including today up to the watermark. Silver also gets a
content checksum per day (see _HOT_SUM), so a changed value is caught, not only a missing row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

from k2.archive import marks
from k2.archive.lake import Lake, watermark
from k2.archive.tables import (
    WATERMARK,
    WRITER_MARKS,
    ArchiveTable,
    TableKind,
    partition_ordinal,
    time_range,
)
from k2.hotstore.schema import DATABASE
from k2.hotstore.store import HotStore
from k2.query import cold_files
from k2.records import decimal_text

log = logging.getLogger(__name__)
DAY = 86400
# One text per trade, the same on both sides: hashed with MD5, the first 8 bytes summed as a
# little-endian UInt64 (mod 2**64). ClickHouse computes the hot side. The archive side is
# computed by chDB from the archive's files where it can read them (query/cold_files.py), and
# otherwise in Python from a pyiceberg scan, a batch at a time.
_HOT_ROW = (
    "concat(exchange, '|', symbol, '|', toString(trade_id), '|', toString(price), "
    "'|', toString(amount), '|', toString(taker_side), "
    "'|', toString(toUnixTimestamp64Nano(ts_event)))"
)
_ARCHIVE_ROW = (  # the same text from the archive's columns (its taker side is a string already)
    "concat(exchange, '|', symbol, '|', toString(trade_id), '|', toString(price), "
    "'|', toString(amount), '|', taker_side, '|', toString(ts_event_ns))"
)


def _sum(row: str) -> str:
    return f"sum(reinterpretAsUInt64(substring(MD5({row}), 1, 8)))"


_HOT_SUM = _sum(_HOT_ROW)
_FIELDS = ("exchange", "symbol", "trade_id", "price", "amount", "taker_side", "ts_event_ns")
DAY_NS = DAY * 1_000_000_000


def _archive_checksums(
    table: Table, lo_day: int, hi_day: int, store: HotStore | None = None
) -> dict[int, int]:
    """Each day's checksum of the archive's trades, days `lo_day` to `hi_day`."""
    scan = table.scan(
        row_filter=time_range("ts_event", lo_day * DAY, (hi_day + 1) * DAY), selected_fields=_FIELDS
    )
    sums: dict[int, int] = defaultdict(int)
    where = f"ts_event_ns >= {lo_day * DAY_NS} AND ts_event_ns < {(hi_day + 1) * DAY_NS}"
    columns = [f"toUInt32(intDiv(ts_event_ns, {DAY_NS})) AS day", f"{_sum(_ARCHIVE_ROW)} AS s"]
    by_engine = cold_files.read(store, scan, columns, where, {}, group_by="day")
    if by_engine is not None:
        if by_engine.num_rows:
            days, totals = by_engine.column(0).to_pylist(), by_engine.column(1).to_pylist()
            for day, total in zip(days, totals, strict=True):  # per file: add them up
                sums[int(day)] += int(total)
        return {day: total % 2**64 for day, total in sums.items()}
    for batch in scan.to_arrow_batch_reader():  # a batch at a time: days of trades are large
        # Decimal text as ClickHouse prints it, which is K2's text form: no exponent, no trailing
        # zeros (Arrow's own cast to string switches to exponents for small values).
        exchange, symbol, tid, price, amount, side, ns = (
            batch.column(c).to_pylist() for c in _FIELDS
        )
        for e, s, i, p, a, sd, n in zip(
            exchange, symbol, tid, price, amount, side, ns, strict=True
        ):
            row = f"{e}|{s}|{i}|{decimal_text(p)}|{decimal_text(a)}|{sd}|{n}"
            sums[n // DAY_NS] += int.from_bytes(hashlib.md5(row.encode()).digest()[:8], "little")
    return {day: total % 2**64 for day, total in sums.items()}


@dataclass
class DayCheck:
    table: str
    day: str  # YYYY-MM-DD (UTC)
    hot_rows: int
    archive_rows: int
    hot_checksum: int | None = None
    archive_checksum: int | None = None

    @property
    def ok(self) -> bool:
        return self.hot_rows == self.archive_rows and self.hot_checksum == self.archive_checksum

    @property
    def difference(self) -> int:
        """Archive minus hot rows (negative: rows missing from the archive)."""
        return self.archive_rows - self.hot_rows


def _day(epoch_day: int) -> str:
    return dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + epoch_day).isoformat()


def _archive_days_from_metadata(table: Table) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for f in table.inspect.data_files().to_pylist():
        counts[partition_ordinal(next(iter(f["partition"].values())))] += f["record_count"]
    return counts


def _archive_candle_days(table: Table, start_s: int, end_s: int) -> dict[int, int]:
    data = table.scan(
        row_filter=time_range("window_start", start_s, end_s),
        selected_fields=("window_start",),
    ).to_arrow()
    if data.num_rows == 0:
        return {}
    days = pc.divide(
        pc.cast(pc.cast(data.column("window_start"), pa.timestamp("s", tz="UTC")), pa.int64()), DAY
    )
    counts = pc.value_counts(pc.cast(days, "int64")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def reconcile_table(
    store: HotStore,
    lake: Lake,
    spec: ArchiveTable,
    retention_days: int | None,
    now: float | None = None,
    checksum: bool = True,
) -> list[DayCheck]:
    """Compare hot and archive per day; return one check per day both hold whole."""
    now = time.time() if now is None else now
    table = lake.table(spec)
    mark = watermark(table)
    if mark is None:
        return []
    first_whole_day = 0 if retention_days is None else int(now - retention_days * DAY) // DAY + 1
    checks: list[DayCheck] = []
    if spec.is_candles:
        assert spec.timeframe is not None
        rows = store.rows(
            "SELECT toUInt32(toDate(window_start)), "
            "uniqExact(exchange, canonical_symbol, window_start) "
            f"FROM {DATABASE}.{spec.name} WHERE window_start < toDateTime({int(mark)}, 'UTC') "
            "GROUP BY 1 ORDER BY 1"
        )
        if not rows:
            return []
        # The first day hot holds is whole only if its first window opened the day: the archive may
        # hold that day's earlier windows from a previous data directory.
        ((hot_start,),) = store.rows(
            f"SELECT toUnixTimestamp(min(window_start)) FROM {DATABASE}.{spec.name}"
        )
        first_hot = rows[0][0] + (0 if hot_start == rows[0][0] * DAY else 1)
        whole = [(d, n) for d, n in rows if d >= max(first_hot, first_whole_day)]
        if whole:
            cold = _archive_candle_days(
                table, whole[0][0] * DAY, min((whole[-1][0] + 1) * DAY, int(mark))
            )
            checks = [DayCheck(spec.name, _day(d), n, cold.get(d, 0)) for d, n in whole]
        return checks
    held = marks.upto(marks.read(table, WRITER_MARKS, WATERMARK))  # what the archive holds
    rows = store.rows(
        f"SELECT toUInt32(toDate(ts_event)), count() FROM {DATABASE}.{spec.name} "
        f"WHERE {held} GROUP BY 1 ORDER BY 1"
    )
    whole = [(d, n) for d, n in rows if d >= first_whole_day]
    cold = _archive_days_from_metadata(table)
    checks = [DayCheck(spec.name, _day(d), n, cold.get(d, 0)) for d, n in whole]
    if checksum and spec.kind is TableKind.SILVER and whole:
        lo, hi = whole[0][0], whole[-1][0]
        hot = dict(
            store.rows(
                f"SELECT toUInt32(toDate(ts_event)), {_HOT_SUM} FROM {DATABASE}.{spec.name} "
                f"WHERE {held} "
                f"AND toDate(ts_event) BETWEEN toDate({lo}) AND toDate({hi}) GROUP BY 1"
            )
        )
        archived = _archive_checksums(table, lo, hi, store)
        for check, (d, _n) in zip(checks, whole, strict=True):
            check.hot_checksum, check.archive_checksum = hot.get(d), archived.get(d)
    return checks
