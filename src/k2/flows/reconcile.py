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
from k2.flows.common import with_retries
from k2.flows.progress import Tables
from k2.flows.runtime import ArchiveRuntime, current

log = logging.getLogger(__name__)


def retention_days(rt: ArchiveRuntime, table: str) -> int | None:
    """How long hot keeps rows of `table` (None: forever)."""
    if table.startswith("bronze_"):
        return rt.settings.hotstore.bronze_ttl_days
    if table == "silver_trades":
        return rt.settings.hotstore.silver_ttl_days
    return None


@task(name="reconcile-table", task_run_name="reconcile-{table}")
def reconcile_one(table: str) -> list[dict[str, Any]]:
    rt = current()
    return [
        asdict(c)
        for c in reconcile_table(rt.store, rt.lake, BY_NAME[table], retention_days(rt, table))
    ]


@flow(name="k2-reconcile", description="Compare hot and archive per table and day.")
def reconcile_flow(tables: list[str] | None = None) -> dict[str, Any]:
    rt = current()
    with rt.guard("reconcile") as mine:
        if not mine:
            log.warning("another reconcile run is in progress: this one skips")
            return {"skipped": True}
        out: dict[str, Any] = {}
        run = with_retries(reconcile_one, rt)
        names = table_names(tables)
        progress = Tables("reconcile", names)
        for name in names:
            if rt.stop_requested.is_set():
                log.info("%s: stopping before %s (the process is stopping)", "reconcile", name)
                break
            progress.started(name)
            started = time.time()
            try:
                checks = [DayCheck(**c) for c in run(name)]
            except Exception as err:  # told, then raised as before: the run stops here
                progress.failed(name, f"{type(err).__name__}: {err}")
                raise
            rt.status.reconcile[name] = checks
            ops.record_reconcile(rt.store, checks)
            bad = [c for c in checks if not c.ok]
            for c in bad:
                log.warning(
                    "reconcile %s %s: hot %d rows, archive %d (%+d)%s",
                    name,
                    c.day,
                    c.hot_rows,
                    c.archive_rows,
                    c.difference,
                    "" if c.hot_checksum == c.archive_checksum else ", content checksum differs",
                )
            ops.record_flow(
                rt.store,
                "reconcile",
                name,
                started,
                "ok" if not bad else "failed",
                len(checks),
                f"{len(bad)} days differ" if bad else "",
            )
            out[name] = {"days": len(checks), "differences": [asdict(c) for c in bad]}
            progress.done(name, out[name])
        rt.status.reconcile_at = time.time()
        return out
