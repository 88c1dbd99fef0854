"""The archive tables (a bronze one per venue, silver, one per candle timeframe): Iceberg
schema, partitioning, sort order, and how to read each from hot.

Types stay exact: prices and amounts are decimal(38, 18); times are timestamptz (microseconds,
Iceberg v2's finest) for partitioning and querying, with the exact nanoseconds beside them in
`*_ns` longs, so no precision a venue sent is lost.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import DayTransform, IdentityTransform, MonthTransform, Transform
from pyiceberg.types import (
    BooleanType,
    DecimalType,
    IcebergType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from k2.errors import ArchiveError, InputError
from k2.exchanges import VENUE_NAMES
from k2.hotstore.queries import CANDLE_MERGE
from k2.hotstore.schema import DATABASE, SILVER_TABLE, TIMEFRAMES, bronze_table, ohlcv_table
from k2.settings import HotStoreSettings

NAMESPACE = "k2"
WATERMARK = "k2.watermark"  # snapshot summary property: the archive holds everything up to here
SILVER_SEQUENCE = "k2.silver_seq"  # candles: silver rows up to this sequence are reflected
# Trade tables: the watermark per writer (archive/marks.py); WATERMARK is their newest, for display.
WRITER_MARKS = "k2.writer_marks"
# Candles: silver rows up to each writer's sequence here are reflected; SILVER_SEQUENCE, newest.
SILVER_WRITER_MARKS = "k2.silver_writer_marks"
DEC = DecimalType(38, 18)


def _fields(*spec: tuple[str, IcebergType]) -> Schema:
    return Schema(
        *(NestedField(i, name, kind, required=True) for i, (name, kind) in enumerate(spec, 1))
    )


BRONZE_SCHEMA = _fields(
    ("symbol", StringType()),
    ("canonical_symbol", StringType()),
    ("trade_id", LongType()),
    ("price", DEC),
    ("amount", DEC),
    ("venue_side", StringType()),
    ("taker_side", StringType()),
    ("ts_event", TimestamptzType()),
    ("ts_event_ns", LongType()),
    ("ts_recv", TimestamptzType()),
    ("ts_recv_ns", LongType()),
    ("conn_id", StringType()),
    ("source", StringType()),
    ("duplicate", BooleanType()),
    ("raw", StringType()),
    ("ingest_seq", LongType()),
)
SILVER_SCHEMA = _fields(
    ("exchange", StringType()),
    ("symbol", StringType()),
    ("canonical_symbol", StringType()),
    ("trade_id", LongType()),
    ("price", DEC),
    ("amount", DEC),
    ("quote_amount", DEC),
    ("taker_side", StringType()),
    ("ts_event", TimestamptzType()),
    ("ts_event_ns", LongType()),
    ("ts_recv", TimestamptzType()),
    ("ts_recv_ns", LongType()),
    ("ingest_seq", LongType()),
)
CANDLE_SCHEMA = Schema(
    *(
        NestedField(i, name, kind, required=True)
        for i, (name, kind) in enumerate(
            (
                ("exchange", StringType()),
                ("canonical_symbol", StringType()),
                ("window_start", TimestamptzType()),
                ("open", DEC),
                ("high", DEC),
                ("low", DEC),
                ("close", DEC),
                ("volume", DEC),
                ("quote_volume", DEC),
                ("trade_count", LongType()),
                ("taker_buy_volume", DEC),
                ("vwap", DEC),
            ),
            1,
        )
    ),
    identifier_field_ids=[
        1,
        2,
        3,
    ],  # a candle is keyed by (exchange, canonical_symbol, window_start)
)

# The column is qualified by its table: an unqualified `ts_event` in the second expression would
# be the µs alias defined by the first (ClickHouse aliases apply query-wide) and lose the ns.
_TIMES = "toDateTime64({t}.{c}, 6, 'UTC') AS {c}, toUnixTimestamp64Nano({t}.{c}) AS {c}_ns"


def _times(table: str, *columns: str) -> list[str]:
    return [_TIMES.format(t=f"{DATABASE}.{table}", c=c) for c in columns]


def time_range(column: str, start_s: int, end_s: int) -> BooleanExpression:
    """An Iceberg row filter: `column` in [start_s, end_s), both epoch seconds."""
    lo, hi = (dt.datetime.fromtimestamp(x, dt.UTC).isoformat() for x in (start_s, end_s))
    # pyiceberg's predicates take (term, literal) positionally; the pydantic mypy plugin reads
    # their model fields instead and expects other arguments.
    return And(GreaterThanOrEqual(column, lo), LessThan(column, hi))  # type: ignore[call-arg]


def partition_ordinal(value: object) -> int:
    """A partition value as an integer: days since 1970 (day partitions come back as dates) or
    months since 1970 (month partitions come back as ints)."""
    if isinstance(value, dt.date):
        return (value - dt.date(1970, 1, 1)).days
    if isinstance(value, int):
        return value
    raise ArchiveError(f"unexpected partition value {value!r} ({type(value).__name__})")


class TableKind(enum.StrEnum):
    """What a table holds, which decides how it is archived, kept and checked."""

    BRONZE = "bronze"  # one venue's raw trades, as received (duplicates included)
    SILVER = "silver"  # every venue's trades, deduplicated
    CANDLES = "candles"  # OHLCV windows of one timeframe


@dataclass(frozen=True)
class ArchiveTable:
    """One archive table and its hot source."""

    name: str  # Iceberg table name in namespace k2 (same as the hot table)
    kind: TableKind
    schema: Schema
    partition_by: str  # source column of the partition transform
    monthly: bool  # month(partition_by) for candles, else day(partition_by)
    sort_by: tuple[str, ...]
    timeframe: str | None = None  # candle tables: archived by closed window, not by ingest sequence

    @property
    def identifier(self) -> str:
        return f"{NAMESPACE}.{self.name}"

    @property
    def is_candles(self) -> bool:
        return self.kind is TableKind.CANDLES

    def retention_days(self, hot: HotStoreSettings) -> int | None:
        """How long the hot store keeps this table's rows (None: for good)."""
        if self.kind is TableKind.BRONZE:
            return hot.bronze_ttl_days
        if self.kind is TableKind.SILVER:
            return hot.silver_ttl_days
        return None

    @property
    def window_seconds(self) -> int:
        """A candle window's length (0 for trade tables): how far behind "now" the archive of
        finished windows is by design."""
        return (
            next(tf.seconds for tf in TIMEFRAMES if tf.name == self.timeframe)
            if self.is_candles
            else 0
        )

    def watermark_time(self, mark: int) -> float:
        """The watermark as epoch seconds: an ingest sequence (µs clock) or a closed-window end."""
        return float(mark) if self.is_candles else mark / 1e6

    def partition_spec(self) -> PartitionSpec:
        field = self.schema.find_field(self.partition_by)
        transform: Transform[Any, int] = MonthTransform() if self.monthly else DayTransform()
        suffix = "month" if self.monthly else "day"
        return PartitionSpec(
            PartitionField(field.field_id, 1000, transform, f"{self.partition_by}_{suffix}")
        )

    def sort_order(self) -> SortOrder:
        return SortOrder(
            *(
                SortField(self.schema.find_field(c).field_id, IdentityTransform())
                for c in self.sort_by
            )
        )

    def select_range(self, where: str, day: int | None = None) -> str:
        """Hot rows matching `where` (marks.between: ingest sequence ranges per writer), and of
        event day `day` (days since 1970) if given, in archive form and sort order."""
        if self.kind is TableKind.SILVER:
            cols = [
                "exchange",
                "symbol",
                "canonical_symbol",
                "toInt64(trade_id) AS trade_id",
                "price",
                "amount",
                "quote_amount",
                "toString(taker_side) AS taker_side",
                *_times(self.name, "ts_event", "ts_recv"),
                "toInt64(ingest_seq) AS ingest_seq",
            ]
        else:
            cols = [
                "symbol",
                "canonical_symbol",
                "toInt64(trade_id) AS trade_id",
                "price",
                "amount",
                "venue_side",
                "toString(taker_side) AS taker_side",
                *_times(self.name, "ts_event", "ts_recv"),
                "conn_id",
                "toString(source) AS source",
                "duplicate",
                "raw",
                "toInt64(ingest_seq) AS ingest_seq",
            ]
        in_day = (
            ""
            if day is None
            else f" AND toDate({DATABASE}.{self.name}.ts_event) = toDate({int(day)})"
        )
        return (
            f"SELECT {', '.join(cols)} FROM {DATABASE}.{self.name} "
            f"WHERE {where}{in_day} "
            f"ORDER BY {', '.join(self.sort_by)}"
        )

    def select_windows(self, start_s: int, end_s: int) -> str:
        """Finished candles with window_start in [start_s, end_s) (epoch seconds),
        in archive form."""
        assert self.timeframe is not None
        # Aggregate under neutral aliases, rename outside: `sum(volume) AS volume` beside a VWAP
        # that calls sum(volume) would nest the aggregate in itself.
        inner = ", ".join(f"{expr} AS v_{name}" for name, expr in CANDLE_MERGE)
        outer = ", ".join(
            f"toInt64(v_{n}) AS {n}" if n == "trade_count" else f"v_{n} AS {n}"
            for n, _ in CANDLE_MERGE
        )
        return (
            f"SELECT exchange, canonical_symbol, toDateTime64(w, 6, 'UTC') AS window_start, "
            f"{outer} "
            f"FROM (SELECT exchange, canonical_symbol, window_start AS w, {inner} "
            f"FROM {DATABASE}.{self.name} "
            f"WHERE window_start >= toDateTime({int(start_s)}, 'UTC') "
            f"AND window_start < toDateTime({int(end_s)}, 'UTC') "
            "GROUP BY exchange, canonical_symbol, window_start) "
            "ORDER BY canonical_symbol, window_start"
        )


TABLES: tuple[ArchiveTable, ...] = (
    *(
        ArchiveTable(
            bronze_table(v),
            TableKind.BRONZE,
            BRONZE_SCHEMA,
            "ts_event",
            False,
            ("symbol", "ts_event"),
        )
        for v in VENUE_NAMES
    ),
    ArchiveTable(
        SILVER_TABLE,
        TableKind.SILVER,
        SILVER_SCHEMA,
        "ts_event",
        False,
        ("canonical_symbol", "ts_event"),
    ),
    *(
        ArchiveTable(
            ohlcv_table(tf.name),
            TableKind.CANDLES,
            CANDLE_SCHEMA,
            "window_start",
            True,
            ("canonical_symbol", "window_start"),
            timeframe=tf.name,
        )
        for tf in TIMEFRAMES
    ),
)
BY_NAME = {t.name: t for t in TABLES}


def table_names(tables: list[str] | None) -> list[str]:
    """Validate table names (default: every table, in order)."""
    if not tables:
        return [t.name for t in TABLES]
    unknown = [t for t in tables if t not in BY_NAME]
    if unknown:
        raise InputError(f"unknown archive table {unknown[0]!r}; choose from: {', '.join(BY_NAME)}")
    return list(tables)
