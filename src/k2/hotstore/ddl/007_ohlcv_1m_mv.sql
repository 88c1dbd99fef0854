-- 1m candles from every silver insert.
CREATE MATERIALIZED VIEW IF NOT EXISTS k2.ohlcv_1m_mv TO k2.ohlcv_1m AS
SELECT
    exchange,
    canonical_symbol,
    toStartOfMinute(toDateTime(ts_event, 'UTC')) AS window_start,
    argMinState(price, (ts_event, trade_id)) AS open,
    max(price) AS high,
    min(price) AS low,
    argMaxState(price, (ts_event, trade_id)) AS close,
    sum(amount) AS volume,
    sum(quote_amount) AS quote_volume,
    count() AS trade_count,
    sumIf(amount, taker_side = 'buy') AS taker_buy_volume
FROM k2.silver_trades
GROUP BY exchange, canonical_symbol, window_start;
