-- Gold: OHLCV candles per timeframe ($tf), AggregatingMergeTree. open/close are the price of the
-- first/last trade by (event time, trade id): argMin/argMax states merge correctly, which
-- SummingMergeTree never could. Applied once per timeframe; the views feeding them follow.
CREATE TABLE IF NOT EXISTS k2.ohlcv_$tf
(
    exchange          LowCardinality(String),
    canonical_symbol  LowCardinality(String),
    window_start      DateTime('UTC'),
    open              AggregateFunction(argMin, Decimal(38, 18), Tuple(DateTime64(9, 'UTC'), UInt64)),
    high              SimpleAggregateFunction(max, Decimal(38, 18)),
    low               SimpleAggregateFunction(min, Decimal(38, 18)),
    close             AggregateFunction(argMax, Decimal(38, 18), Tuple(DateTime64(9, 'UTC'), UInt64)),
    volume            SimpleAggregateFunction(sum, Decimal(38, 18)),
    quote_volume      SimpleAggregateFunction(sum, Decimal(38, 18)),
    trade_count       SimpleAggregateFunction(sum, UInt64),
    taker_buy_volume  SimpleAggregateFunction(sum, Decimal(38, 18))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (exchange, canonical_symbol, window_start)
SETTINGS index_granularity = 1024;  -- queries read a few windows of one market

-- Finished candles: states merged, with VWAP. divideDecimal, because Decimal128 division
-- overflows silently for any quote volume above ~170.
CREATE VIEW IF NOT EXISTS k2.candles_$tf AS
SELECT
    exchange,
    canonical_symbol,
    '$tf' AS timeframe,
    window_start,
    argMinMerge(open) AS open,
    max(high) AS high,
    min(low) AS low,
    argMaxMerge(close) AS close,
    sum(volume) AS volume,
    sum(quote_volume) AS quote_volume,
    sum(trade_count) AS trade_count,
    sum(taker_buy_volume) AS taker_buy_volume,
    toDecimal128(divideDecimal(quote_volume, volume, 18), 18) AS vwap
FROM k2.ohlcv_$tf
GROUP BY exchange, canonical_symbol, window_start;
