"""The maintenance flow: compaction, snapshot expiry, orphan files and an audit, once a day."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, task

from k2.archive import ops
from k2.archive.maintenance import MaintenanceResult, maintain_table
from k2.archive.tables import BY_NAME, table_names
from k2.errors import ArchiveError
from k2.flows.common import with_retries
from k2.flows.progress import Tables
from k2.flows.runtime import current

log = logging.getLogger(__name__)


@task(name="maintain-table", task_run_name="maintain-{table}")
def maintain_one(table: str) -> dict[str, Any]:
    rt = current()
    return asdict(maintain_table(rt.lake, BY_NAME[table], rt.settings.archive))


@flow(name="k2-maintenance", description="Compact, expire snapshots, remove orphan files, audit.")
def maintenance_flow(tables: list[str] | None = None) -> dict[str, Any]:
    rt = current()
    with rt.guard("maintenance") as mine:
        if not mine:
            log.warning("another maintenance run is in progress: this one skips")
            return {"skipped": True}
        results: dict[str, Any] = {}
        failed: dict[str, str] = {}
        run = with_retries(maintain_one, rt)
        names = table_names(tables)
        progress = Tables("maintenance", names)
        for name in names:
            if rt.stop_requested.is_set():
                log.info("%s: stopping before %s (the process is stopping)", "maintenance", name)
                break
            progress.started(name)
            state = run(name, return_state=True)
            if state.is_completed():
                result = MaintenanceResult(**state.result())
                results[name] = asdict(result)
                rt.status.maintenance[name] = result
                ops.record_maintenance(rt.store, result, "ok")
                log.info(
                    "audit %s: files %d -> %d, %d partitions compacted (%d rows), "
                    "%d snapshots expired, %d orphan files removed (%d bytes)",
                    name,
                    result.files_before,
                    result.files_after,
                    result.partitions_compacted,
                    result.rows_rewritten,
                    result.snapshots_expired,
                    result.orphans_removed,
                    result.orphan_bytes,
                )
                progress.done(name, results[name])
            else:
                failed[name] = str(state.message)
                ops.record_maintenance(rt.store, MaintenanceResult(name), "failed", failed[name])
                progress.failed(name, failed[name])
        rt.status.maintenance_at, rt.status.maintenance_ok = time.time(), not failed
        if not failed:
            rt.status.maintenance_success_at = rt.status.maintenance_at
        if failed:
            rt.status.maintenance_failures += 1
            raise ArchiveError(
                f"maintenance failed for {', '.join(sorted(failed))}: {next(iter(failed.values()))}"
            )
        return results
