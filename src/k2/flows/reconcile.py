"""The reconcile flow: hot vs archive, per table and day, with a content checksum for silver."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, task

from k2.archive import ops
from k2.archive.reconcile import DayCheck, reconcile_table
from k2.archive.tables import BY_NAME, table_names
from k2.flows.common import failed_tables, for_each_table
from k2.flows.runtime import ArchiveRuntime, current

log = logging.getLogger(__name__)
NAME = "reconcile"


@task(name="reconcile-table", task_run_name="reconcile-{table}")
def reconcile_one(table: str) -> list[dict[str, Any]]:
    rt = current()
    spec = BY_NAME[table]
    retention = spec.retention_days(rt.settings.hotstore)
    return [asdict(c) for c in reconcile_table(rt.store, rt.lake, spec, retention)]


class _Steps:
    """Each table's day checks, as status, ops rows and a flow-run row."""

    def __init__(self, rt: ArchiveRuntime) -> None:
        self.rt = rt

    def done(self, table: str, found: list[dict[str, Any]], started: float) -> dict[str, Any]:
        checks = [DayCheck(**c) for c in found]
        self.rt.status.reconcile[table] = checks
        ops.record_reconcile(self.rt.store, checks)
        bad = [c for c in checks if not c.ok]
        for c in bad:
            log.warning(
                "reconcile %s %s: hot %d rows, archive %d (%+d)%s",
                table,
                c.day,
                c.hot_rows,
                c.archive_rows,
                c.difference,
                "" if c.hot_checksum == c.archive_checksum else ", content checksum differs",
            )
        status, detail = ("failed", f"{len(bad)} days differ") if bad else ("ok", "")
        ops.record_flow(self.rt.store, NAME, table, started, status, len(checks), detail)
        return {"days": len(checks), "differences": [asdict(c) for c in bad]}

    def failed(self, table: str, error: str, started: float) -> None:
        ops.record_flow(self.rt.store, NAME, table, started, "failed", 0, error)

    def stopped(self, table: str, started: float) -> None:
        stopped = "the process stopped during the run"
        ops.record_flow(self.rt.store, NAME, table, started, "skipped", 0, stopped)


@flow(name="k2-reconcile", description="Compare hot and archive per table and day.")
def reconcile_flow(tables: list[str] | None = None) -> dict[str, Any]:
    """Reconcile `tables` (default: every table); fail if any could not be compared, after
    trying them all (days that differ are a result, not a failure)."""
    rt = current()
    with rt.guard(NAME) as mine:
        if not mine:
            log.warning("another reconcile run is in progress: this one skips")
            return {"skipped": True}
        names = table_names(tables)
        results, failures = for_each_table(rt, NAME, names, reconcile_one, _Steps(rt))
        rt.status.reconcile_at = time.time()
        if failures:
            raise failed_tables(NAME, failures)
        return results
