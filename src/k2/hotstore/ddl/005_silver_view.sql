-- Silver: the rows of each ingest batch the feeds accepted (duplicate = false), all venues in one
-- block, so the candle views below run once per batch. quote_amount = price * amount in
-- Decimal256: a Decimal128 product (scale 36) overflows silently, and multiplyDecimal() is exact
-- but ~50x slower.
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
    ingest_seq
FROM k2.ingest_trades
WHERE NOT duplicate;
