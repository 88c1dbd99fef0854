-- Each larger timeframe ($tf) rolls up the 1m partial states a batch just wrote: the trades are
-- aggregated once, at 1m; 5m..1d merge a handful of 1m rows. All five hang off 1m (a star, not a
-- chain), so they run side by side. States merge exactly: argMin/argMax keep their
-- (event time, trade id) keys.
CREATE MATERIALIZED VIEW IF NOT EXISTS k2.ohlcv_${tf}_mv TO k2.ohlcv_$tf AS
SELECT
    exchange,
    canonical_symbol,
    toStartOfInterval(source_window, INTERVAL $interval) AS window_start,
    argMinMergeState(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMergeState(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume
FROM (SELECT *, window_start AS source_window FROM k2.ohlcv_1m)
GROUP BY exchange, canonical_symbol, window_start;
