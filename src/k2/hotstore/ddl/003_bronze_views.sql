-- Applied once per registered venue ($venue): its rows of each ingest batch into its bronze table.
CREATE MATERIALIZED VIEW IF NOT EXISTS k2.bronze_from_ingest_$venue TO k2.bronze_trades_$venue AS
SELECT symbol, canonical_symbol, trade_id, price, amount, venue_side,
       if(taker_buy, 'buy', 'sell') AS taker_side, ts_event, ts_recv, conn_id,
       source, duplicate, raw, ingest_seq, writer
FROM k2.ingest_trades
WHERE exchange = '$venue';
