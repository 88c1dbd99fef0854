"""The maintenance flow, once a day: compaction, snapshot expiry, orphan files and an audit per
archive table, then the hot store's retention (only days the archive holds in full go)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, task

from k2.archive import ops
from k2.archive.maintenance import MaintenanceResult, maintain_table
from k2.archive.retention import expire_hot
from k2.archive.tables import BY_NAME, table_names
from k2.flows.common import failed_tables, for_each_table
from k2.flows.runtime import ArchiveRuntime, current

log = logging.getLogger(__name__)
NAME = "maintenance"


@task(name="maintain-table", task_run_name="maintain-{table}")
def maintain_one(table: str) -> dict[str, Any]:
    rt = current()
    return asdict(maintain_table(rt.lake, BY_NAME[table], rt.settings.archive))


@task(name="hot-retention")
def hot_retention(tables: list[str]) -> list[dict[str, Any]]:
    """Drop the hot days past retention that the archive holds (of these maintained tables)."""
    rt = current()
    return [asdict(r) for r in expire_hot(rt.store, rt.lake, rt.settings.hotstore, tables=tables)]


class _Steps:
    """Each table's audit row and status."""

    def __init__(self, rt: ArchiveRuntime) -> None:
        self.rt = rt

    def done(self, table: str, found: dict[str, Any], started: float) -> dict[str, Any]:
        result = MaintenanceResult(**found)
        self.rt.status.maintenance[table] = result
        ops.record_maintenance(self.rt.store, result, "ok")
        log.info(
            "audit %s: files %d -> %d, %d partitions compacted (%d rows), %d snapshots expired, "
            "%d orphan files removed (%d bytes)",
            table,
            result.files_before,
            result.files_after,
            result.partitions_compacted,
            result.rows_rewritten,
            result.snapshots_expired,
            result.orphans_removed,
            result.orphan_bytes,
        )
        return asdict(result)

    def failed(self, table: str, error: str, started: float) -> None:
        ops.record_maintenance(self.rt.store, MaintenanceResult(table), "failed", error)

    def stopped(self, table: str, started: float) -> None:
        stopped = "the process stopped during the run"
        ops.record_maintenance(self.rt.store, MaintenanceResult(table), "failed", stopped)


@flow(name="k2-maintenance", description="Compact, expire snapshots, remove orphan files, audit.")
def maintenance_flow(tables: list[str] | None = None) -> dict[str, Any]:
    rt = current()
    with rt.guard(NAME) as mine:
        if not mine:
            log.warning("another maintenance run is in progress: this one skips")
            return {"skipped": True}
        names = table_names(tables)
        results, failures = for_each_table(rt, NAME, names, maintain_one, _Steps(rt))
        done = [n for n in names if n in results]
        if done and not rt.stop_requested.is_set():
            try:
                for r in hot_retention(done):
                    results[r["table"]] |= {
                        "hot_days_dropped": len(r["dropped"]),
                        "hot_days_kept": len(r["kept"]),
                    }
            except Exception as err:  # noqa: BLE001 - reported like a table's failure
                log.error("hot retention failed: %s", err)
                failures["hot retention"] = str(err)
        rt.status.maintenance_at, rt.status.maintenance_ok = time.time(), not failures
        if failures:
            rt.status.maintenance_failures += 1
            raise failed_tables(NAME, failures)
        rt.status.maintenance_success_at = rt.status.maintenance_at
        return results
