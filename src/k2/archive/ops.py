"""Record what the archive flows did in the hot store's ops tables (and read it back)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from k2.archive.maintenance import MaintenanceResult
from k2.archive.offload import OffloadResult
from k2.archive.reconcile import DayCheck
from k2.archive.tables import ArchiveTable
from k2.hotstore.schema import DATABASE
from k2.hotstore.store import HotStore

if TYPE_CHECKING:
    from k2.archive.status import ArchiveStatus

_MS = pa.timestamp("ms", tz="UTC")


def record_offload(
    store: HotStore,
    result: OffloadResult | None,
    table: str,
    started: float,
    status: str,
    detail: str = "",
) -> None:
    store.insert_arrow(
        f"{DATABASE}.ops_flow_runs",
        pa.table(
            {
                "flow": ["offload"],
                "table_name": [table],
                "started_at": pa.array([int(started * 1000)], _MS),
                "finished_at": pa.array([int(time.time() * 1000)], _MS),
                "status": [status],
                "rows": pa.array([result.rows if result else 0], pa.uint64()),
                "watermark": pa.array(
                    [(result.watermark_after or result.watermark_before or 0) if result else 0],
                    pa.int64(),
                ),
                "newest_event": pa.array(
                    [result.newest_event_ns if result else 0], pa.timestamp("ns", tz="UTC")
                ),
                "detail": [detail],
            }
        ),
    )


def record_flow(
    store: HotStore,
    flow: str,
    table: str,
    started: float,
    status: str,
    rows: int = 0,
    detail: str = "",
) -> None:
    store.insert_arrow(
        f"{DATABASE}.ops_flow_runs",
        pa.table(
            {
                "flow": [flow],
                "table_name": [table],
                "started_at": pa.array([int(started * 1000)], _MS),
                "finished_at": pa.array([int(time.time() * 1000)], _MS),
                "status": [status],
                "rows": pa.array([rows], pa.uint64()),
                "watermark": pa.array([0], pa.int64()),
                "newest_event": pa.array([0], pa.timestamp("ns", tz="UTC")),
                "detail": [detail],
            }
        ),
    )


def record_maintenance(
    store: HotStore, result: MaintenanceResult, status: str, detail: str = ""
) -> None:
    r = result
    store.insert_arrow(
        f"{DATABASE}.ops_maintenance_audit",
        pa.table(
            {
                "table_name": [r.table],
                "run_at": pa.array([int(time.time() * 1000)], _MS),
                "status": [status],
                "files_before": pa.array([r.files_before], pa.uint32()),
                "files_after": pa.array([r.files_after], pa.uint32()),
                "partitions_compacted": pa.array([r.partitions_compacted], pa.uint32()),
                "rows_rewritten": pa.array([r.rows_rewritten], pa.uint64()),
                "snapshots_expired": pa.array([r.snapshots_expired], pa.uint32()),
                "orphans_removed": pa.array([r.orphans_removed], pa.uint32()),
                "orphan_bytes": pa.array([r.orphan_bytes], pa.uint64()),
                "seconds": [r.seconds],
                "detail": [detail],
            }
        ),
    )


def record_reconcile(store: HotStore, checks: Sequence[DayCheck]) -> None:
    if not checks:
        return
    now = int(time.time() * 1000)
    store.insert_arrow(
        f"{DATABASE}.ops_reconcile",
        pa.table(
            {
                "table_name": [c.table for c in checks],
                "day": pa.array([c.day for c in checks]).cast(pa.date32()),
                "checked_at": pa.array([now] * len(checks), _MS),
                "hot_rows": pa.array([c.hot_rows for c in checks], pa.uint64()),
                "archive_rows": pa.array([c.archive_rows for c in checks], pa.uint64()),
                "hot_checksum": pa.array([c.hot_checksum for c in checks], pa.uint64()),
                "archive_checksum": pa.array([c.archive_checksum for c in checks], pa.uint64()),
                "ok": [c.ok for c in checks],
            }
        ),
    )


# -- reading it back: what `k2 up` starts from and what `k2 health` judges a stopped directory by --


def load_status(store: HotStore, status: ArchiveStatus, specs: Sequence[ArchiveTable]) -> None:
    """Fill `status` from the ops tables: the archive as the last runs (of any process) left it."""
    by_name = {s.name: s for s in specs}
    for (
        name,
        first,
        last_ok,
        last_attempt,
        newest,
        mark,
        consecutive,
        failures,
        error,
    ) in store.rows(f"""
        WITH last AS (SELECT table_name, maxIf(finished_at, status = 'ok') AS ok_at
                      FROM {DATABASE}.ops_flow_runs WHERE flow = 'offload' GROUP BY table_name)
        SELECT r.table_name, toUnixTimestamp64Milli(min(r.started_at)),
               toUnixTimestamp64Milli(any(l.ok_at)), toUnixTimestamp64Milli(max(r.finished_at)),
               toUnixTimestamp64Nano(maxIf(r.newest_event, r.status = 'ok')),
               argMaxIf(r.watermark, r.finished_at, r.status = 'ok'),
               countIf(r.status = 'failed' AND r.finished_at > l.ok_at),
               countIf(r.status = 'failed'),
               argMaxIf(r.detail, r.finished_at, r.status = 'failed')
        FROM {DATABASE}.ops_flow_runs AS r INNER JOIN last AS l ON r.table_name = l.table_name
        WHERE r.flow = 'offload' GROUP BY r.table_name"""):
        if name not in by_name:
            continue
        table = status.tables[name]
        table.last_success = int(last_ok) / 1000 if last_ok else 0.0
        table.last_attempt, table.first_attempt = int(last_attempt) / 1000, int(first) / 1000
        table.newest_event_ns = int(newest or 0)
        table.watermark = int(mark) if last_ok and mark else None
        table.consecutive_failures, table.failures, table.last_error = (
            int(consecutive),
            int(failures),
            error or "",
        )
    for name, run_at, ok, *values in store.rows(f"""
        SELECT table_name, toUnixTimestamp64Milli(max(run_at)), argMax(status = 'ok', run_at),
               argMax(files_before, run_at), argMax(files_after, run_at),
               argMax(partitions_compacted, run_at), argMax(rows_rewritten, run_at),
               argMax(snapshots_expired, run_at), argMax(orphans_removed, run_at),
               argMax(orphan_bytes, run_at), argMax(seconds, run_at)
        FROM {DATABASE}.ops_maintenance_audit GROUP BY table_name"""):
        if name not in by_name:
            continue
        at = int(run_at) / 1000
        before, after, compacted, rewritten, expired, orphans, orphan_bytes, seconds = values
        status.maintenance[name] = MaintenanceResult(
            name,
            files_before=int(before),
            files_after=int(after),
            partitions_compacted=int(compacted),
            rows_rewritten=int(rewritten),
            snapshots_expired=int(expired),
            orphans_removed=int(orphans),
            orphan_bytes=int(orphan_bytes),
            seconds=float(seconds),
        )
        status.maintenance_at = max(status.maintenance_at, at)
        status.maintenance_ok = status.maintenance_ok and bool(ok)
    ((ok_at,),) = store.rows(
        f"SELECT toUnixTimestamp64Milli(maxIf(run_at, status = 'ok')) "
        f"FROM {DATABASE}.ops_maintenance_audit"
    )
    status.maintenance_success_at = int(ok_at or 0) / 1000
    checks: dict[str, list[DayCheck]] = {}
    for name, day, hot, archive, hot_sum, archive_sum, at in store.rows(f"""
        SELECT table_name, toString(day), hot_rows, archive_rows, hot_checksum, archive_checksum,
               toUnixTimestamp64Milli(checked_at)
        FROM {DATABASE}.ops_reconcile
        WHERE (table_name, checked_at) IN (SELECT table_name, max(checked_at)
                                           FROM {DATABASE}.ops_reconcile
                                           GROUP BY table_name)"""):
        if name in by_name:
            checks.setdefault(name, []).append(
                DayCheck(name, day, int(hot), int(archive), hot_sum, archive_sum)
            )
            status.reconcile_at = max(status.reconcile_at, int(at) / 1000)
    status.reconcile.update(checks)
