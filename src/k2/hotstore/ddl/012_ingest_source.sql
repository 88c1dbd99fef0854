-- The feeds now say how each trade came (WebSocket or REST); stores made before this derived it
-- from the connection id's "-rest" suffix in the bronze views.
ALTER TABLE k2.ingest_trades
    ADD COLUMN IF NOT EXISTS source Enum8('ws' = 1, 'rest' = 2) AFTER conn_id;
