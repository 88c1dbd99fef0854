-- The writer's single insert per batch: a Null table (it stores nothing) whose materialized
-- views fan each batch out to the venue's bronze table and, once, to silver; the candles
-- follow from silver. One INSERT per batch, not one per venue: every insert costs parts.
CREATE TABLE IF NOT EXISTS k2.ingest_trades
(
    exchange          LowCardinality(String),
    symbol            LowCardinality(String),
    canonical_symbol  LowCardinality(String),
    trade_id          UInt64,
    price             Decimal(38, 18),  -- sent as the exact decimal text: parsed here, off Python's GIL
    amount            Decimal(38, 18),
    venue_side        LowCardinality(String),
    taker_buy         Bool,
    ts_event          DateTime64(9, 'UTC'),
    ts_recv           DateTime64(9, 'UTC'),
    conn_id           LowCardinality(String),
    source            Enum8('ws' = 1, 'rest' = 2),  -- how it came: a WebSocket message, a REST page
    duplicate         Bool,
    raw               String,
    ingest_seq        UInt64,
    writer            LowCardinality(String)  -- since 015; here so 003's views find it on a new store
)
ENGINE = Null;
