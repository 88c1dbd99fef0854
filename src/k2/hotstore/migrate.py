"""Apply the DDL in `ddl/` to a hot store: versioned, idempotent, TTLs synced from settings."""

from __future__ import annotations

import logging
import re
from importlib import resources
from string import Template

from k2.exchanges import VENUE_NAMES
from k2.hotstore.schema import (
    DATABASE,
    DEDUP_WINDOW,
    SILVER_TABLE,
    TIMEFRAMES,
    bronze_table,
    ohlcv_table,
)
from k2.hotstore.store import HotStore
from k2.settings import HotStoreSettings

log = logging.getLogger(__name__)
_PER_VENUE = {"002_bronze.sql", "003_bronze_views.sql", "013_bronze_views_source.sql"}
# Per venue too, but they alter a venue's bronze table: only the venues that have one (a venue
# added later gets its table from 002, with today's definition, after the migrations).
_PER_EXISTING_VENUE = {"016_bronze_writer.sql"}
_PER_TIMEFRAME = {"006_ohlcv.sql"}
_PER_ROLLUP = {"008_ohlcv_rollups.sql"}  # every timeframe but 1m, rolled up from 1m
# The venue and timeframe tables and views (all IF NOT EXISTS): re-applied at every start, after
# the pending migrations, so a newly registered venue gets its tables with today's definition.
_REAPPLIED = {"002_bronze.sql", "003_bronze_views.sql"} | _PER_TIMEFRAME | _PER_ROLLUP


def migrations() -> list[tuple[int, str, str]]:
    """Return (version, name, text) for every DDL file, in order."""
    out = []
    for entry in sorted(
        resources.files("k2.hotstore").joinpath("ddl").iterdir(), key=lambda p: p.name
    ):
        if entry.name.endswith(".sql"):
            out.append(
                (int(entry.name.split("_", 1)[0]), entry.name, entry.read_text(encoding="utf-8"))
            )
    return out


def statements(text: str) -> list[str]:
    """Split a DDL file into statements (`;` at the end of a line), dropping comment lines."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", body, flags=re.MULTILINE) if s.strip()]


def render(
    name: str, text: str, settings: HotStoreSettings, venues: tuple[str, ...] = VENUE_NAMES
) -> list[str]:
    """Return the statements of one DDL file, expanded per venue or timeframe where it applies
    (`venues`: those with a bronze table, for the migrations that alter one)."""
    values: dict[str, int | str] = {
        "bronze_ttl_days": settings.bronze_ttl_days,
        "silver_ttl_days": settings.silver_ttl_days,
    }
    if name in _PER_VENUE:
        variants = [values | {"venue": v} for v in VENUE_NAMES]
    elif name in _PER_EXISTING_VENUE:
        variants = [values | {"venue": v} for v in venues]
    elif name in _PER_TIMEFRAME:
        variants = [values | {"tf": tf.name, "interval": tf.interval} for tf in TIMEFRAMES]
    elif name in _PER_ROLLUP:
        variants = [values | {"tf": tf.name, "interval": tf.interval} for tf in TIMEFRAMES[1:]]
    else:
        variants = [values]
    return [Template(s).substitute(v) for v in variants for s in statements(text)]


def apply(store: HotStore, settings: HotStoreSettings) -> list[str]:
    """Bring the store's schema up to date; return the names of migrations applied now."""
    store.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    store.execute(
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {row[0] for row in store.rows(f"SELECT version FROM {DATABASE}.schema_migrations")}
    applied = []
    every = migrations()
    for version, name, text in every:  # each once per data directory, in order
        if version in done:
            continue
        for statement in render(name, text, settings, _venues_with_bronze(store)):
            store.execute(statement)
        store.execute(
            f"INSERT INTO {DATABASE}.schema_migrations (version, name) VALUES ({version}, '{name}')"
        )
        applied.append(name)
        log.info("hot store: applied %s", name)
    for _version, name, text in every:
        if name in _REAPPLIED:
            for statement in render(name, text, settings):
                store.execute(statement)
    sync_ttls(store, settings)
    sync_dedup_windows(store)
    return applied


def _venues_with_bronze(store: HotStore) -> tuple[str, ...]:
    query = f"SELECT name FROM system.tables WHERE database = '{DATABASE}'"
    tables = {row[0] for row in store.rows(query)}
    return tuple(v for v in VENUE_NAMES if bronze_table(v) in tables)


def _ttl_tables(settings: HotStoreSettings) -> dict[str, tuple[str, int]]:
    return {"rejects": ("ts_recv", settings.silver_ttl_days)}


def sync_ttls(store: HotStore, settings: HotStoreSettings) -> None:
    """Make every table's TTL match the settings (only tables whose TTL differs are altered).

    Bronze and silver have none: a TTL would delete rows the archive does not hold yet, so their
    retention is archive/retention.py, which expires a day only once it is archived. Stores made
    before that lose theirs here (and their CREATE statements still carry one, removed at once).
    """
    current = dict(
        store.rows(f"SELECT name, engine_full FROM system.tables WHERE database = '{DATABASE}'")
    )
    for table in (*(bronze_table(v) for v in VENUE_NAMES), SILVER_TABLE):
        if " TTL " in current.get(table, ""):
            store.execute(f"ALTER TABLE {DATABASE}.{table} REMOVE TTL")
            log.info("hot store: %s has no TTL now (expiry waits for the archive)", table)
    for table, (column, days) in _ttl_tables(settings).items():
        if f"toIntervalDay({days})" not in current.get(table, ""):
            store.execute(
                f"ALTER TABLE {DATABASE}.{table} "
                f"MODIFY TTL toDateTime({column}) + INTERVAL {days} DAY"
            )
            log.info("hot store: %s TTL set to %d days", table, days)


def dedup_tables() -> list[str]:
    """The tables K2 inserts trades, gaps and rejects into, materialized views' targets included."""
    return [
        *(bronze_table(v) for v in VENUE_NAMES),
        SILVER_TABLE,
        *(ohlcv_table(tf.name) for tf in TIMEFRAMES),
        "feed_gaps",
        "rejects",
    ]


def sync_dedup_windows(store: HotStore) -> None:
    """Give every table in `dedup_tables()` the deduplication window tokens need (a MergeTree
    table that is not replicated keeps none by default, and then ignores the tokens)."""
    current = dict(
        store.rows(f"SELECT name, engine_full FROM system.tables WHERE database = '{DATABASE}'")
    )
    setting = f"non_replicated_deduplication_window = {DEDUP_WINDOW}"
    for table in dedup_tables():
        if setting not in current.get(table, ""):
            store.execute(f"ALTER TABLE {DATABASE}.{table} MODIFY SETTING {setting}")
