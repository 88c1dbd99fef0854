"""The embedded shape, `k2 up`: feeds -> writer -> chDB, the API, and the schedules, in one process.

Start-up order: lock the data directory, open the store and bring its schema up to date, reload
where the feeds were, then start the writer, the feeds and the API. A stop reverses it, within
`shutdown_grace_s` whatever the store or the venues are doing: the schedule starts nothing more,
the live feeds stop, the gap repairs already queued get most of the grace period, the writer gets
the rest for what it holds, then the store closes. Gaps still open stay pending for the next
start; trades the writer could not store are counted, and the next start repairs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from k2.api.app import create_app
from k2.api.server import ApiServer
from k2.archive import ops
from k2.archive.lake import Lake
from k2.archive.status import ArchiveStatus
from k2.archive.tables import TABLES
from k2.background import in_daemon_thread
from k2.bus.stats import ConsumerStats, ProducerStats
from k2.errors import StoreError
from k2.flows import API, FLOWS
from k2.flows.runtime import ArchiveRuntime, using
from k2.flows.schedule import Job, Schedule
from k2.hotstore.owner import OwnedStore
from k2.hotstore.resume import last_sequence, load_resume
from k2.hotstore.stats import WriterStats
from k2.hotstore.store import HotStore
from k2.hotstore.writer import StoreWriter
from k2.ingest.feed import Feed
from k2.ingest.runner import build_feeds, describe_gap, http_client, run_feeds, stop_feeds
from k2.ingest.stats import LIVE, FeedStats
from k2.instruments import Instruments
from k2.observe.health import HealthInputs
from k2.observe.hot import hot_state
from k2.records import Gap
from k2.settings import Settings, with_venues
from k2.simulator import Simulator
from k2.simulator.simulator import from_settings
from k2.telemetry import PipelineMetrics

log = logging.getLogger(__name__)


@dataclass
class StopReport:
    """How the last stop went: what was left, and how long it took."""

    started: float = 0.0  # monotonic, when the stop began (0: not stopping)
    deadline: float = 0.0  # monotonic, the end of the grace period
    finished: float = 0.0
    open_gaps: list[Gap] = field(default_factory=list)  # still pending: the next start resumes them
    unwritten: int = 0  # trades the writer could not store: the next start repairs them
    forced: bool = False  # something was still busy at the deadline: exit without waiting for it

    @property
    def clean(self) -> bool:
        """Everything reached the store and nothing is still running: no repair needed next time."""
        return self.started > 0 and not self.unwritten and not self.forced

    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started if self.started else 0.0


@dataclass
class Embedded:
    """Everything `k2 up` runs; the API and the flows reach the store through this object."""

    settings: Settings
    instruments: Instruments
    simulate: bool = False
    store: HotStore | None = None
    writer: StoreWriter | None = None
    feeds: list[Feed] = field(default_factory=list)
    simulator: Simulator | None = None
    api_url: str = ""
    table_rows: dict[str, int] = field(default_factory=dict)  # rows stored per table (refreshed)
    hot_newest: dict[str, float] = field(default_factory=dict)  # newest event per table (refreshed)
    metrics: PipelineMetrics = field(default_factory=PipelineMetrics)
    started_at: float = field(default_factory=time.time)
    lake: Lake | None = None
    archive: ArchiveRuntime | None = None
    report: StopReport = field(default_factory=StopReport)
    _owner: OwnedStore | None = None

    # -- the parts ----------------------------------------------------------------------------
    def open_store(self) -> HotStore:
        self._owner = OwnedStore(self.settings.data_dir, self.settings.hotstore, "k2 up")
        self.store = self._owner.store
        self.lake = Lake(self.settings.archive, self.settings.data_dir)
        self.archive = ArchiveRuntime(
            self.store,
            self.lake,
            self.settings,
            metrics=self.metrics if self.settings.metrics.enabled else None,
        )
        # where the last runs left the archive
        ops.load_status(self.store, self.archive.status, TABLES)
        return self.store

    # -- what /metrics and /health read ----------------------------------------------------------
    def venues(self) -> list[str]:
        return [f.name for f in self.feeds] or [
            v for v in self.instruments if self.settings.venue(v).enabled
        ]

    def _all_live(self) -> bool:
        return bool(self.feeds) and all(f.stats.state == LIVE for f in self.feeds)

    def feed_stats(self) -> list[tuple[FeedStats, int]]:
        return [(f.stats, f.repairer.pending()) for f in self.feeds]

    def writer_stats(self) -> WriterStats | None:
        return self.writer.stats if self.writer is not None else None

    def archive_status(self) -> ArchiveStatus | None:
        return self.archive.status if self.archive is not None else None

    def bus_stats(self) -> tuple[ProducerStats | None, list[ConsumerStats]]:
        return None, []  # the embedded shape has no bus

    def health_inputs(self) -> HealthInputs:
        assert self.archive is not None
        return HealthInputs(
            time.time(),
            True,
            self.venues(),
            self.settings.data_dir,
            self.archive.status,
            dict(self.table_rows),
            dict(self.hot_newest),
            self.feed_stats(),
            self.writer_stats(),
            self.settings.writer.max_pending_rows,
            self.started_at,
            prefect=(API.started_at, API.ready_at, API.error),
        )

    def schedule(self) -> list[Job]:
        """The archive flows and their cron schedules (none if schedules are switched off)."""
        s = self.settings.archive
        if not s.schedule_enabled:
            return []
        return [Job(name, cron, FLOWS[name]) for name, cron in s.crons.items()]

    def status_rows(self) -> list[tuple[str, str]]:
        """Rows per table for the status view: written by this run / stored."""
        assert self.writer is not None
        written = self.writer.stats.rows
        rows = []
        for name in sorted((set(self.table_rows) | set(written)) - {"schema_migrations"}):
            stored = f"{self.table_rows.get(name, 0):,} stored"
            # Candle tables are written by materialized views: only what they hold is known.
            rows.append(
                (name, f"{written[name]:,} written / {stored}" if name in written else stored)
            )
        rows.append(
            (
                "writer",
                (
                    f"{self.writer.stats.batches:,} batches, "
                    f"{self.writer.stats.pending:,} pending, "
                    f"backpressure {self.writer.stats.backpressure_s:.1f} s"
                ),
            )
        )
        if API.started_at:  # a flow has asked for Prefect's API
            rows.append(
                (
                    "prefect",
                    f"API ready (answered after {API.waited():.0f} s)"
                    if API.ready_at
                    else f"starting its API server: {API.waited():.0f} s",
                )
            )
        return rows

    async def _refresh_table_rows(self, stop: asyncio.Event) -> None:
        """Keep `table_rows` and `hot_newest` current (every 2 s,
        and once more after the last write)."""
        assert self.store is not None
        venues = self.venues()
        while True:
            try:
                self.table_rows, self.hot_newest = await asyncio.wrap_future(
                    self.store.submit(hot_state, self.store, venues)
                )
            except StoreError as err:  # the writer reports the outage; the last figures stand
                log.debug("hot store figures not refreshed: %s", err)
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(
        self, stop: asyncio.Event, show: Callable[[Embedded, asyncio.Event], Any] | None = None
    ) -> None:
        """Run until `stop` is set, then shut down in order within `shutdown_grace_s`.

        Nothing in flight is lost: what cannot be written in time is counted (`report`), and the
        next start repairs it from the venues. `report.forced` says that something (a flow run, a
        store call) was still busy at the end of the grace period: the caller should exit at once.
        """
        # a busy port or a bad host fails here, the store untouched
        api = ApiServer(self.settings.api)
        try:
            await asyncio.to_thread(self.open_store)
        except BaseException:
            await api.stop()
            raise
        assert self.store is not None and self._owner is not None and self.archive is not None
        try:
            with using(self.archive):
                await self._run(api, stop, show)
        finally:
            await api.stop(timeout=1.0)  # (already stopped unless the run failed)
            owner, lake, clean = self._owner, self.lake, self.report.clean

            def close() -> None:
                owner.close(clean)
                if lake is not None:
                    lake.close()

            await self._bounded(close, "closing the store")
        if self.report.clean:
            log.info("k2 up: stopped cleanly in %.1f s", self.report.seconds())

    async def _bounded(self, fn: Callable[[], Any], what: str, slack_s: float = 5.0) -> bool:
        """Run blocking `fn` in a daemon thread,
        waiting until the grace period ends (plus `slack_s`)."""
        until = self.report.deadline + slack_s if self.report.deadline else time.monotonic() + 60
        try:
            await asyncio.wait_for(
                in_daemon_thread(fn, "k2-stop"), max(until - time.monotonic(), 0.1)
            )
            return True
        except TimeoutError:
            log.error("k2 up: %s did not finish within the grace period; exiting without it", what)
            self.report.forced = True
            return False

    async def _run(
        self,
        api: ApiServer,
        stop: asyncio.Event,
        show: Callable[[Embedded, asyncio.Event], Any] | None,
    ) -> None:
        assert self.store is not None and self._owner is not None and self.archive is not None
        resume = await asyncio.to_thread(load_resume, self.store, self.settings.ingest.recent_ids)
        self.writer = StoreWriter(
            self.store,
            self.settings.writer,
            await asyncio.to_thread(last_sequence, self.store),
            self.metrics if self.settings.metrics.enabled else None,
            self.settings.hotstore.shortest_retention_days,
        )
        settings = self.settings
        if self.simulate:
            self.simulator = from_settings(settings, self.instruments)
            self.simulator.paused = True  # the market opens once every feed is connected
            await self.simulator.start()
            settings = with_venues(settings, self.simulator.venue_settings())
        self.api_url = await api.start(create_app(self))
        self._owner.lock.update(api_url=self.api_url)
        log.info("k2 up: data in %s, API on %s", settings.data_dir, self.api_url)
        feeds_stop, repair_stop, writer_stop, side_stop = (asyncio.Event() for _ in range(4))
        schedule_stop = asyncio.Event()
        schedule = Schedule(self.schedule())
        async with http_client() as http:
            self.feeds = build_feeds(settings, self.instruments, self.writer, http, resume)
            async with asyncio.TaskGroup() as tg:
                hint = None if self.simulate else "`make run ARGS=--simulate` (`k2 up --simulate`)"
                feeds_task = tg.create_task(run_feeds(self.feeds, feeds_stop, repair_stop, hint))
                writer_task = tg.create_task(self.writer.run(writer_stop))
                side = [tg.create_task(self._refresh_table_rows(side_stop))]
                if show is not None:
                    side.append(tg.create_task(show(self, side_stop)))
                if self.simulator is not None:
                    side.append(tg.create_task(self.simulator.open_when(self._all_live, stop)))
                schedule_task = tg.create_task(schedule.run(schedule_stop))
                await stop.wait()
                report = self.report
                report.started = time.monotonic()
                report.deadline = report.started + settings.shutdown_grace_s
                log.info("k2 up: stopping (within %.0f s)", settings.shutdown_grace_s)
                # No new flow runs; one in progress stops at its next safe point.
                schedule_stop.set()
                self.archive.stop_requested.set()
                if self.simulator is not None:
                    self.simulator.paused = True
                    await asyncio.sleep(0.5)  # what the simulator already sent arrives
                # The writer gets the last part of the grace period for what the feeds handed it.
                writer_share = min(5.0, settings.shutdown_grace_s / 3)
                report.open_gaps = await stop_feeds(
                    self.feeds, feeds_stop, repair_stop, feeds_task, report.deadline - writer_share
                )
                writer_stop.set()
                await writer_task
                report.unwritten = await self.writer.close(report.deadline - 0.5)
                await schedule_task
                running = schedule.running()
                if running:
                    _, late = await asyncio.wait(
                        running, timeout=max(report.deadline - time.monotonic(), 0.1)
                    )
                    if late:
                        log.error(
                            "k2 up: a flow run was still going at the end of the grace period"
                        )
                        report.forced = True
                side_stop.set()
                for task in side:
                    task.cancel()
        await api.stop(timeout=max(report.deadline - time.monotonic(), 1.0))
        if self.simulator is not None:
            await self.simulator.stop()
        for gap in report.open_gaps:
            log.warning("k2 up: gap still open, pending for the next start: %s", describe_gap(gap))
