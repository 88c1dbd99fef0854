"""Hot-store retention that never deletes what the archive does not hold.

Bronze and silver keep `hotstore.bronze_ttl_days` and `silver_ttl_days` of trades by event time.
A ClickHouse TTL would delete rows by their age alone: a REST repair of old trades after a long
outage, or an archive down for longer than the retention, would lose rows from both tiers (chDB
deletes rows already past their TTL seconds after they are inserted). So these tables carry no
TTL (hotstore/migrate.py removes it), and expiry is this step instead: a day's partition is
emptied once the whole day is past the retention *and* the archive holds every row of it, by the
per-writer marks of the table's Iceberg snapshot (archive/marks.py). The delete itself names the
archived rows, not the partition, so a trade that lands in the day meanwhile stays. A day the
archive lacks rows of stays, and is said so; it goes at the first run after the offload caught up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from k2.archive import marks
from k2.archive.lake import Lake
from k2.archive.tables import TABLES, WATERMARK, WRITER_MARKS, ArchiveTable
from k2.hotstore import expired
from k2.hotstore.schema import DATABASE
from k2.hotstore.store import HotStore
from k2.settings import HotStoreSettings

log = logging.getLogger(__name__)
DAY = 86_400


@dataclass
class RetentionResult:
    table: str
    dropped: list[str] = field(default_factory=list)  # days (partitions, YYYYMMDD) emptied
    rows_dropped: int = 0
    kept: dict[str, int] = field(default_factory=dict)  # day past retention -> rows not archived


def _expired_days(store: HotStore, table: str, days: int, now: float) -> list[str]:
    """The table's day partitions whose whole day is older than `days` days."""
    cutoff = time.strftime("%Y%m%d", time.gmtime(now - days * DAY - DAY))
    rows = store.rows(
        "SELECT DISTINCT partition FROM system.parts WHERE database = {db:String} "
        "AND table = {t:String} AND active AND partition <= {cutoff:String} ORDER BY partition",
        {"db": DATABASE, "t": table, "cutoff": cutoff},
    )
    return [str(r[0]) for r in rows]


def expire_table(
    store: HotStore, lake: Lake, spec: ArchiveTable, hot: HotStoreSettings, now: float
) -> RetentionResult:
    """Empty `spec`'s hot days past retention that the archive holds in full."""
    result = RetentionResult(spec.name)
    days = spec.retention_days(hot)
    if days is None:
        return result
    candidates = _expired_days(store, spec.name, days, now)
    if not candidates:
        return result
    held = marks.upto(marks.read(lake.table(spec), WRITER_MARKS, WATERMARK))
    for day in candidates:
        ((total, missing),) = store.rows(
            f"SELECT count(), countIf(NOT ({held})) FROM {DATABASE}.{spec.name} "
            "WHERE toYYYYMMDD(ts_event) = {d:UInt32}",
            {"d": int(day)},
        )
        if not total:  # emptied by an earlier run; its empty parts are not cleaned up yet
            continue
        if missing:
            result.kept[day] = int(missing)
            log.warning(
                "hot store: keeping %s day %s past its %d-day retention: the archive lacks %d of "
                "its %d rows (it goes once they are offloaded)",
                spec.name,
                day,
                days,
                missing,
                total,
            )
            continue
        result.dropped.append(day)
        result.rows_dropped += int(total)
    if not result.dropped:
        return result
    # Say so before deleting: a reader that finds a day recorded after reading hot reads what hot
    # may lack of it from the archive (query/tiers.py).
    for day in result.dropped:
        expired.record(store, spec.name, expired.day_ordinal(day))
    # Delete what the archive holds, not the partitions: a late trade inserted into one of these
    # days since the counts above is not archived, and must stay. A lightweight delete marks the
    # rows (no part is rewritten), so inserts queued behind it wait a moment; synchronous, so the
    # table holds the result when this returns; one for all the days (each costs about a second).
    store.execute(
        f"DELETE FROM {DATABASE}.{spec.name} "
        f"WHERE toYYYYMMDD(ts_event) IN {{days:Array(UInt32)}} AND ({held})",
        {"days": [int(d) for d in result.dropped]},
        settings={"lightweight_deletes_sync": 2},
    )
    log.info(
        "hot store: expired %s days %s (%d rows, all archived)",
        spec.name,
        ", ".join(result.dropped),
        result.rows_dropped,
    )
    return result


def expire_hot(
    store: HotStore,
    lake: Lake,
    hot: HotStoreSettings,
    now: float | None = None,
    tables: Collection[str] | None = None,
) -> list[RetentionResult]:
    """Apply the retention to every trade table, or those of `tables` (candles stay for good)."""
    now = time.time() if now is None else now
    return [
        expire_table(store, lake, spec, hot, now)
        for spec in TABLES
        if spec.retention_days(hot) is not None and (tables is None or spec.name in tables)
    ]
