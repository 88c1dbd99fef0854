"""Names and shapes shared by the hot store's writer, queries and the archive."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

DATABASE = "k2"
SILVER_TABLE = "silver_trades"  # every venue's trades, deduplicated


@dataclass(frozen=True)
class Timeframe:
    name: str  # 1m, 5m, ...
    interval: str  # ClickHouse INTERVAL expression
    seconds: int


TIMEFRAMES = (
    Timeframe("1m", "1 MINUTE", 60),
    Timeframe("5m", "5 MINUTE", 300),
    Timeframe("15m", "15 MINUTE", 900),
    Timeframe("30m", "30 MINUTE", 1800),
    Timeframe("1h", "1 HOUR", 3600),
    Timeframe("1d", "1 DAY", 86400),
)
TIMEFRAME_BY_NAME = {tf.name: tf for tf in TIMEFRAMES}

# Every table K2 inserts trades, gap records or rejects into remembers the tokens of its last this
# many inserted blocks (`non_replicated_deduplication_window`), so a repeated insert is dropped
# (batch.insert_settings). It must cover every insert made into a table between a batch's first
# attempt and its retry, by all writers: 10,000 is over ten minutes of inserts at full rate.
DEDUP_WINDOW = 10_000

DECIMAL = pa.decimal128(38, 18)
TS = pa.timestamp("ns", tz="UTC")

# What the writer inserts, once per batch, into the Null table that fans out to bronze.
INGEST_TABLE = "ingest_trades"
INGEST_INSERT = pa.schema(
    [
        ("exchange", pa.dictionary(pa.int32(), pa.string())),
        ("symbol", pa.string()),
        ("canonical_symbol", pa.string()),
        ("trade_id", pa.uint64()),
        ("price", pa.string()),
        ("amount", pa.string()),
        ("venue_side", pa.string()),
        ("taker_buy", pa.bool_()),
        ("ts_event", TS),
        ("ts_recv", TS),
        ("conn_id", pa.dictionary(pa.int32(), pa.string())),
        ("source", pa.dictionary(pa.int32(), pa.string())),  # ws | rest
        ("duplicate", pa.bool_()),
        ("raw", pa.binary()),
        ("ingest_seq", pa.uint64()),
        ("writer", pa.dictionary(pa.int32(), pa.string())),  # who numbered ingest_seq
    ]
)


def bronze_table(venue: str) -> str:
    return f"bronze_trades_{venue}"


def ohlcv_table(timeframe: str) -> str:
    return f"ohlcv_{timeframe}"
