"""The embedded shape's scheduler: the archive flows, on cron schedules, inside `k2 up`.

Prefect's `serve` and workers run each flow in a new process, which could not open the chDB data
directory `k2 up` owns; so the flows are called in this process, each in a worker thread, on
schedules computed here. A run still going when its next time comes is skipped (and logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cronsim import CronSim, CronSimError

from k2.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    cron: str
    run: Callable[[], Any]  # blocking; runs in a worker thread

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        return next(CronSim(self.cron, moment))


def validate_cron(expr: str, what: str) -> None:
    try:
        CronSim(expr, dt.datetime.now(dt.UTC))
    except CronSimError as err:
        raise ConfigError(f"{what}: invalid cron expression {expr!r}: {err}") from None


async def run_schedule(jobs: list[Job], stop: asyncio.Event) -> None:
    """Run each job at its cron times (UTC) until `stop`; then wait for runs in progress."""
    if not jobs:
        await stop.wait()
        return
    now = dt.datetime.now(dt.UTC)
    due = {job.name: job.next_after(now) for job in jobs}
    running: dict[str, asyncio.Task[Any]] = {}
    for job in jobs:
        log.info("schedule: %s at %s (next %s)", job.name, job.cron, due[job.name].isoformat(timespec="seconds"))
    try:
        while not stop.is_set():
            wait = (min(due.values()) - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            now = dt.datetime.now(dt.UTC)
            for job in jobs:
                if due[job.name] > now:
                    continue
                due[job.name] = job.next_after(now)
                if job.name in running and not running[job.name].done():
                    log.warning("schedule: %s is still running from its last time; skipping this one", job.name)
                    continue
                running[job.name] = asyncio.create_task(_run(job))
    finally:
        for task in running.values():
            with contextlib.suppress(Exception):
                await task


async def _run(job: Job) -> None:
    try:
        await asyncio.to_thread(job.run)
    except Exception as err:  # a failed run is logged (and counted by the flow); the schedule goes on
        log.error("schedule: %s failed: %s", job.name, err)
