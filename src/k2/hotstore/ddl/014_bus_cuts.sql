-- The cluster shape's ingest workers: the last batch cut from each bus partition, written before
-- the batch itself. A worker that takes the partition over (after a restart or a rebalance)
-- replays exactly that offset range with the same deduplication token, so the store drops what it
-- already has and completes what it lacks (docs/CLUSTER.md, "Exactly once").
CREATE TABLE IF NOT EXISTS k2.bus_cuts
(
    topic         LowCardinality(String),
    partition     UInt32,
    first_offset  Int64,
    last_offset   Int64,
    member        String,
    at            DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(at)
ORDER BY (topic, partition);
