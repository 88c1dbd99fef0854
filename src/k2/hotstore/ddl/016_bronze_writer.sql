-- Applied once per venue whose bronze table exists ($venue): the writer column (see 015), and
-- the old bronze view dropped; 003, re-applied after every migration, makes it anew with it.
ALTER TABLE k2.bronze_trades_$venue ADD COLUMN IF NOT EXISTS writer LowCardinality(String);
DROP VIEW IF EXISTS k2.bronze_from_ingest_$venue;
