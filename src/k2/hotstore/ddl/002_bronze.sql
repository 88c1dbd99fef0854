-- Bronze: one table per venue, every trade exactly as received (duplicates included), with the
-- venue's raw JSON, where and when it arrived, and the writer's ingest sequence.
-- Also the table's definition for a venue added later (re-applied after every migration).
-- Applied once per registered venue ($venue); TTLs are synced from settings at every start.
CREATE TABLE IF NOT EXISTS k2.bronze_trades_$venue
(
    symbol            LowCardinality(String) COMMENT 'venue symbol as the venue spells it',
    canonical_symbol  LowCardinality(String) COMMENT 'BASE/QUOTE, venue aliases mapped',
    trade_id          UInt64,
    price             Decimal(38, 18),
    amount            Decimal(38, 18),
    venue_side        LowCardinality(String) COMMENT 'the venue side field, verbatim',
    taker_side        Enum8('buy' = 1, 'sell' = 2),
    ts_event          DateTime64(9, 'UTC') COMMENT 'exchange trade time',
    ts_recv           DateTime64(9, 'UTC') COMMENT 'local receive time',
    conn_id           LowCardinality(String) COMMENT 'WebSocket connection, <venue>-rest for backfill, or recovered (refilled from silver after an unclean stop)',
    source            Enum8('ws' = 1, 'rest' = 2),
    duplicate         Bool COMMENT 'already seen: kept here, not in silver',
    raw               String CODEC(LZ4) COMMENT 'the venue JSON of this trade (LZ4: cheap to merge)',
    ingest_seq        UInt64 COMMENT 'writer sequence, monotonic per writer',
    writer            LowCardinality(String) COMMENT 'the writer that numbered the row (migration 015)',
    INDEX idx_seq ingest_seq TYPE minmax GRANULARITY 1
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_event)
ORDER BY (symbol, ts_event, trade_id)
TTL toDateTime(ts_event) + INTERVAL $bronze_ttl_days DAY;
