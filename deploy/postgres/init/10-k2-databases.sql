-- Run once by the postgres image, on an empty data directory, as the POSTGRES_USER (k2).
-- k2_catalog (POSTGRES_DB, created by the image) holds the Iceberg SQL catalog; prefect holds the
-- Prefect server's database, which needs the pg_trgm extension.
CREATE DATABASE prefect;
\connect prefect
CREATE EXTENSION IF NOT EXISTS pg_trgm;
