"""The embedded shape's scheduler: the archive flows, on cron schedules, inside `k2 up`.

Prefect's `serve` and workers run each flow in a new process, which could not open the chDB data
directory `k2 up` owns; so the flows are called in this process, each in a daemon thread, on
schedules computed here. A run still going when its next time comes is skipped (and logged). When
the schedule stops it starts nothing more; runs in progress are the caller's to wait for
(`running`), within its grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cronsim import CronSim

from k2.background import in_daemon_thread

log = logging.getLogger(__name__)


@dataclass
class Job:
    name: str
    cron: str
    run: Callable[[], Any]  # blocking; runs in a daemon thread

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        return next(CronSim(self.cron, moment))


class Schedule:
    """Runs each job at its cron times (UTC) until stopped."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self._running: dict[str, asyncio.Future[Any]] = {}

    def running(self) -> list[asyncio.Future[Any]]:
        """The runs still in progress."""
        return [f for f in self._running.values() if not f.done()]

    async def run(self, stop: asyncio.Event) -> None:
        if not self.jobs:
            await stop.wait()
            return
        now = dt.datetime.now(dt.UTC)
        due = {job.name: job.next_after(now) for job in self.jobs}
        for job in self.jobs:
            log.info(
                "schedule: %s at %s (next %s)",
                job.name,
                job.cron,
                due[job.name].isoformat(timespec="seconds"),
            )
        while not stop.is_set():
            wait = (min(due.values()) - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
                continue
            now = dt.datetime.now(dt.UTC)
            for job in self.jobs:
                if due[job.name] > now:
                    continue
                due[job.name] = job.next_after(now)
                if job.name in self._running and not self._running[job.name].done():
                    log.warning(
                        "schedule: %s is still running from its last time; skipping this one",
                        job.name,
                    )
                    continue
                future = in_daemon_thread(job.run, f"k2-flow-{job.name}")
                future.add_done_callback(functools.partial(_report, job.name))
                self._running[job.name] = future


def _report(name: str, future: asyncio.Future[Any]) -> None:
    err = None if future.cancelled() else future.exception()
    if err is not None:  # a failed run is logged (and counted by the flow); the schedule goes on
        log.error("schedule: %s failed: %s", name, err)
