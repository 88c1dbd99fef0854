-- The days hot-store retention emptied in a trade table (archive/retention.py). A day goes in
-- here before its rows are deleted, so a reader that finds it here after reading hot knows that
-- hot may lack rows of that day and reads them from the archive (query/tiers.py).
CREATE TABLE IF NOT EXISTS k2.hot_expired
(
    table  LowCardinality(String),
    day    Date,
    at     DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(at)
ORDER BY (table, day);
