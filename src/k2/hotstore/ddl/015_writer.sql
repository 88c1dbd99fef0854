-- Every trade row names the writer that numbered it (a `k2 up` run, or one `k2 ingest` process),
-- and ingest_seq is monotonic per writer. The offload keeps a watermark per writer, so rows
-- numbered by one writer but committed after another's later-numbered rows are never skipped.
-- Rows written before this have writer ''.
ALTER TABLE k2.ingest_trades ADD COLUMN IF NOT EXISTS writer LowCardinality(String);
ALTER TABLE k2.silver_trades ADD COLUMN IF NOT EXISTS writer LowCardinality(String);
DROP VIEW IF EXISTS k2.silver_from_ingest;
CREATE MATERIALIZED VIEW IF NOT EXISTS k2.silver_from_ingest TO k2.silver_trades AS
SELECT
    exchange,
    symbol,
    canonical_symbol,
    trade_id,
    price,
    amount,
    toDecimal128(toDecimal256(price, 18) * amount, 18) AS quote_amount,
    if(taker_buy, 'buy', 'sell') AS taker_side,
    ts_event,
    ts_recv,
    ingest_seq,
    writer
FROM k2.ingest_trades
WHERE NOT duplicate;
