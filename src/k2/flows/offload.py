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
from k2.errors import ArchiveError
from k2.flows.common import with_retries
from k2.flows.progress import Tables
from k2.flows.runtime import current

log = logging.getLogger(__name__)


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
        lookback_minutes=s.candle_lookback_minutes,
        checkpoint=rt.checkpoint,
    )
    return asdict(result)


@flow(name="k2-offload", description="Archive the hot tables to Iceberg, exactly once.")
def offload_flow(tables: list[str] | None = None) -> dict[str, Any]:
    """Offload `tables` (default: all ten); fail if any table failed, after trying them all."""
    rt = current()
    names = table_names(tables)
    with rt.guard("offload") as mine:
        if not mine:
            log.warning("another offload run is in progress: this one skips")
            return {"skipped": True}
        cycle_started = time.time()
        results: dict[str, Any] = {}
        failed: dict[str, str] = {}
        run = with_retries(offload_one, rt)
        progress = Tables("offload", names)
        for name in names:
            if rt.stop_requested.is_set():
                log.info("offload: stopping before %s (the process is stopping)", name)
                break
            progress.started(name)
            started = time.time()
            status = rt.status.tables[name]
            status.last_attempt = started
            status.first_attempt = status.first_attempt or started
            state = run(name, return_state=True)
            if state.is_completed():
                result = state.result()
                results[name] = result
                status.last_success, status.consecutive_failures = time.time(), 0
                status.rows += result["rows"]
                status.watermark = result["watermark_after"] or result["watermark_before"]
                status.newest_event_ns = max(status.newest_event_ns, result["newest_event_ns"])
                ops.record_offload(rt.store, OffloadResult(**result), name, started, "ok")
                progress.done(name, result)
            elif rt.stop_requested.is_set():  # interrupted at a safe point, not failed
                stopped = "the process stopped during the run"
                ops.record_offload(rt.store, None, name, started, "skipped", stopped)
                progress.failed(name, f"{stopped} (the next run resumes)")
            else:
                failed[name] = status.last_error = str(state.message)
                status.failures += 1
                status.consecutive_failures += 1
                ops.record_offload(rt.store, None, name, started, "failed", failed[name])
                progress.failed(name, failed[name])
            if rt.metrics is not None:
                rt.metrics.offload_duration.observe(time.time() - started, name)
        rt.status.cycle_seconds, rt.status.cycle_at = time.time() - cycle_started, time.time()
        rt.status.cycles += 1
        if rt.metrics is not None:
            rt.metrics.offload_cycle.observe(rt.status.cycle_seconds)
        rows = sum(r["rows"] for r in results.values())
        log.info(
            "offload: %d rows in %.2f s across %d tables", rows, rt.status.cycle_seconds, len(names)
        )
        if failed:
            raise ArchiveError(
                f"offload failed for {', '.join(sorted(failed))}: {next(iter(failed.values()))}"
            )
        return results
