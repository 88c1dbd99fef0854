-- Every detected gap, pending and then resolved: the latest record per gap_id wins.
CREATE TABLE IF NOT EXISTS k2.feed_gaps
(
    gap_id       String,
    exchange     LowCardinality(String),
    symbol       LowCardinality(String),
    kind         Enum8('ids' = 1, 'window' = 2),
    first_id     UInt64,
    last_id      UInt64,
    ts_from      DateTime64(9, 'UTC'),
    ts_to        DateTime64(9, 'UTC'),
    detected_at  DateTime64(9, 'UTC'),
    resolved_at  DateTime64(9, 'UTC'),
    outcome      Enum8('pending' = 0, 'repaired' = 1, 'partial' = 2, 'unrecoverable' = 3),
    missing      UInt64,
    recovered    UInt64,
    version      UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (exchange, symbol, gap_id);

-- Every message that failed validation, quarantined with its reason and raw text.
CREATE TABLE IF NOT EXISTS k2.rejects
(
    exchange  LowCardinality(String),
    reason    String,
    raw       String CODEC(ZSTD(3)),
    ts_recv   DateTime64(9, 'UTC'),
    conn_id   LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts_recv)
ORDER BY (exchange, ts_recv)
TTL toDateTime(ts_recv) + INTERVAL $silver_ttl_days DAY;
