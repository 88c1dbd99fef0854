-- Applied once per registered venue ($venue): the bronze views made before 012 derive the source;
-- drop them, and 003, re-applied after every migration, makes them anew reading the column.
DROP VIEW IF EXISTS k2.bronze_from_ingest_$venue;
