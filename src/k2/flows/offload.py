"""The offload flow: every archive table, exactly once, every 15 minutes."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from prefect import flow, task

from k2.archive import ops
from k2.archive.offload import OffloadResult, offload_table
from k2.archive.tables import BY_NAME, table_names
from k2.flows.common import failed_tables, for_each_table
from k2.flows.runtime import ArchiveRuntime, current

log = logging.getLogger(__name__)
NAME = "offload"


@task(name="offload-table", task_run_name="offload-{table}")
def offload_one(table: str) -> dict[str, Any]:
    """Offload one table (its watermark makes a retry safe at any point)."""
    rt = current()
    s = rt.settings.archive
    result = offload_table(
        rt.store,
        rt.lake,
        BY_NAME[table],
        chunk_rows=s.chunk_rows,
        chunk_bytes=s.chunk_bytes,
        lookback_minutes=s.candle_lookback_minutes,
        checkpoint=rt.checkpoint,
    )
    return asdict(result)


class _Steps:
    """Each table's status, ops row and duration."""

    def __init__(self, rt: ArchiveRuntime) -> None:
        self.rt = rt

    def _begun(self, table: str, started: float) -> None:
        status = self.rt.status.tables[table]
        status.last_attempt = started
        status.first_attempt = status.first_attempt or started
        if self.rt.metrics is not None:
            self.rt.metrics.offload_duration.observe(time.time() - started, table)

    def done(self, table: str, result: dict[str, Any], started: float) -> dict[str, Any]:
        self._begun(table, started)
        status = self.rt.status.tables[table]
        status.last_success, status.consecutive_failures = time.time(), 0
        status.rows += result["rows"]
        status.watermark = result["watermark_after"] or result["watermark_before"]
        status.newest_event_ns = max(status.newest_event_ns, result["newest_event_ns"])
        ops.record_offload(self.rt.store, OffloadResult(**result), table, started, "ok")
        return result

    def failed(self, table: str, error: str, started: float) -> None:
        self._begun(table, started)
        status = self.rt.status.tables[table]
        status.last_error = error
        status.failures += 1
        status.consecutive_failures += 1
        ops.record_offload(self.rt.store, None, table, started, "failed", error)

    def stopped(self, table: str, started: float) -> None:
        self._begun(table, started)
        stopped = "the process stopped during the run"
        ops.record_offload(self.rt.store, None, table, started, "skipped", stopped)


@flow(name="k2-offload", description="Archive the hot tables to Iceberg, exactly once.")
def offload_flow(tables: list[str] | None = None) -> dict[str, Any]:
    """Offload `tables` (default: every table); fail if any table failed, after trying them all."""
    rt = current()
    names = table_names(tables)
    with rt.guard(NAME) as mine:
        if not mine:
            log.warning("another offload run is in progress: this one skips")
            return {"skipped": True}
        cycle_started = rt.status.cycle_started = time.time()
        try:
            results, failures = for_each_table(rt, NAME, names, offload_one, _Steps(rt))
        finally:
            rt.status.cycle_started = 0.0
        rt.status.cycle_seconds, rt.status.cycle_at = time.time() - cycle_started, time.time()
        rt.status.cycles += 1
        if rt.metrics is not None:
            rt.metrics.offload_cycle.observe(rt.status.cycle_seconds)
        rows = sum(r["rows"] for r in results.values())
        log.info(
            "offload: %d rows in %.2f s across %d tables", rows, rt.status.cycle_seconds, len(names)
        )
        if failures:
            raise failed_tables(NAME, failures)
        return results
