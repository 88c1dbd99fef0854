-- Silver: one row per unique trade, all venues (fed from the ingest table, below).
CREATE TABLE IF NOT EXISTS k2.silver_trades
(
    exchange          LowCardinality(String),
    symbol            LowCardinality(String),
    canonical_symbol  LowCardinality(String),
    trade_id          UInt64,
    price             Decimal(38, 18),
    amount            Decimal(38, 18),
    quote_amount      Decimal(38, 18),
    taker_side        Enum8('buy' = 1, 'sell' = 2),
    ts_event          DateTime64(9, 'UTC'),
    ts_recv           DateTime64(9, 'UTC'),
    ingest_seq        UInt64,
    INDEX idx_seq ingest_seq TYPE minmax GRANULARITY 1,
    INDEX idx_trade_id trade_id TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (canonical_symbol, exchange, ts_event, trade_id)
TTL toDateTime(ts_event) + INTERVAL $silver_ttl_days DAY;
