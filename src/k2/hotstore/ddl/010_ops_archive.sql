-- What the archive flows did, for `k2 health`, the runbooks and the audit trail.
CREATE TABLE IF NOT EXISTS k2.ops_flow_runs
(
    flow         LowCardinality(String),
    table_name   LowCardinality(String),
    started_at   DateTime64(3, 'UTC'),
    finished_at  DateTime64(3, 'UTC'),
    status       Enum8('ok' = 1, 'failed' = 2, 'skipped' = 3),
    rows         UInt64,
    watermark    Int64 COMMENT 'archive watermark after the run (offload)',
    newest_event DateTime64(9, 'UTC') COMMENT 'newest event time the archive holds (offload)',
    detail       String
)
ENGINE = MergeTree
ORDER BY (flow, table_name, started_at)
TTL toDateTime(started_at) + INTERVAL 90 DAY;

-- The maintenance audit: one row per table per run.
CREATE TABLE IF NOT EXISTS k2.ops_maintenance_audit
(
    table_name            LowCardinality(String),
    run_at                DateTime64(3, 'UTC'),
    status                Enum8('ok' = 1, 'failed' = 2),
    files_before          UInt32,
    files_after           UInt32,
    partitions_compacted  UInt32,
    rows_rewritten        UInt64,
    snapshots_expired     UInt32,
    orphans_removed       UInt32,
    orphan_bytes          UInt64,
    seconds               Float64,
    detail                String
)
ENGINE = MergeTree
ORDER BY (table_name, run_at);

-- Reconcile results: one row per table and day compared.
CREATE TABLE IF NOT EXISTS k2.ops_reconcile
(
    table_name        LowCardinality(String),
    day               Date,
    checked_at        DateTime64(3, 'UTC'),
    hot_rows          UInt64,
    archive_rows      UInt64,
    hot_checksum      Nullable(UInt64),
    archive_checksum  Nullable(UInt64),
    ok                Bool
)
ENGINE = MergeTree
ORDER BY (table_name, day, checked_at)
TTL toDateTime(checked_at) + INTERVAL 90 DAY;
