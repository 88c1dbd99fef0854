"""The embedded shape, `k2 up`: feeds -> writer -> chDB, the API, and the schedules, in one process.

Start-up order: lock the data directory, open the store and bring its schema up to date, reload
where the feeds were, then start the writer, the feeds and the API. Shutdown reverses it: the
feeds stop first, the writer writes the in-flight batch, then the store closes.
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
from k2.archive.tables import TABLES
from k2.flows import FLOWS
from k2.flows.runtime import ArchiveRuntime, ArchiveStatus, using
from k2.flows.schedule import Job, run_schedule, validate_cron
from k2.hotstore.store import HotStore
from k2.hotstore.owner import OwnedStore
from k2.hotstore.resume import last_sequence, load_resume
from k2.hotstore.writer import StoreWriter, WriterStats
from k2.ingest.feed import Feed
from k2.ingest.runner import build_feeds, http_client, run_feeds
from k2.ingest.stats import LIVE, FeedStats
from k2.instruments import Instruments
from k2.observe.health import HealthInputs
from k2.observe.hot import hot_state
from k2.observe.metrics import PipelineMetrics
from k2.settings import Settings, with_venues
from k2.simulator import Simulator
from k2.simulator.simulator import from_settings

log = logging.getLogger(__name__)
DRAIN_TIMEOUT_S = 30.0


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
    _owner: OwnedStore | None = None

    # -- the parts ----------------------------------------------------------------------------
    def open_store(self) -> HotStore:
        self._owner = OwnedStore(self.settings.data_dir, self.settings.hotstore, "k2 up")
        self.store = self._owner.store
        self.lake = Lake(self.settings.archive, self.settings.data_dir)
        self.archive = ArchiveRuntime(self.store, self.lake, self.settings,
                                      metrics=self.metrics if self.settings.metrics.enabled else None)  # fmt: skip
        ops.load_status(self.store, self.archive.status, TABLES)  # where the last runs left the archive
        return self.store

    # -- what /metrics and /health read ----------------------------------------------------------
    def venues(self) -> list[str]:
        return [f.name for f in self.feeds] or [v for v in self.instruments if self.settings.venue(v).enabled]

    def feed_stats(self) -> list[tuple[FeedStats, int]]:
        return [(f.stats, f.repairer.pending()) for f in self.feeds]

    def writer_stats(self) -> WriterStats | None:
        return self.writer.stats if self.writer is not None else None

    def archive_status(self) -> ArchiveStatus | None:
        return self.archive.status if self.archive is not None else None

    def health_inputs(self) -> HealthInputs:
        assert self.archive is not None
        return HealthInputs(time.time(), True, self.venues(), self.settings.data_dir, self.archive.status,
                            dict(self.table_rows), dict(self.hot_newest), self.feed_stats(), self.writer_stats(),
                            self.settings.writer.max_pending_rows, self.started_at)  # fmt: skip

    def schedule(self) -> list[Job]:
        """The archive flows and their cron schedules (none if schedules are switched off)."""
        s = self.settings.archive
        if not s.schedule_enabled:
            return []
        crons = {"offload": s.offload_cron, "maintenance": s.maintenance_cron, "reconcile": s.reconcile_cron}
        return [Job(name, cron, FLOWS[name]) for name, cron in crons.items()]

    def status_rows(self) -> list[tuple[str, str]]:
        """Rows per table for the status view: written by this run / stored."""
        assert self.writer is not None
        written = self.writer.stats.rows
        rows = []
        for name in sorted((set(self.table_rows) | set(written)) - {"schema_migrations"}):
            stored = f"{self.table_rows.get(name, 0):,} stored"
            # Candle tables are written by materialized views: only what they hold is known.
            rows.append((name, f"{written[name]:,} written / {stored}" if name in written else stored))
        rows.append(("writer", f"{self.writer.stats.batches:,} batches, {self.writer.stats.pending:,} pending, "
                               f"backpressure {self.writer.stats.backpressure_s:.1f} s"))  # fmt: skip
        return rows

    async def _refresh_table_rows(self, stop: asyncio.Event) -> None:
        """Keep `table_rows` and `hot_newest` current (every 2 s, and once more after the last write)."""
        assert self.store is not None
        venues = self.venues()
        while True:
            self.table_rows, self.hot_newest = await asyncio.wrap_future(self.store.submit(hot_state, self.store, venues))
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)

    # -- lifecycle ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, show: Callable[[Embedded, asyncio.Event], Any] | None = None) -> None:
        """Run until `stop` is set, then shut down in order (nothing in flight is lost)."""
        for job in self.schedule():
            validate_cron(job.cron, f"archive schedule for {job.name}")
        await asyncio.to_thread(self.open_store)
        assert self.store is not None and self._owner is not None and self.archive is not None
        clean = False
        try:
            with using(self.archive):
                await self._run(stop, show)
            clean = True  # every batch is written: nothing for the next start to repair
        finally:
            await asyncio.to_thread(self._owner.close, clean)
            if self.lake is not None:
                self.lake.close()
        log.info("k2 up: stopped cleanly")

    async def _run(self, stop: asyncio.Event, show: Callable[[Embedded, asyncio.Event], Any] | None) -> None:
        assert self.store is not None and self._owner is not None
        resume = await asyncio.to_thread(load_resume, self.store, self.settings.ingest.recent_ids)
        self.writer = StoreWriter(self.store, self.settings.writer, await asyncio.to_thread(last_sequence, self.store),
                                  self.metrics if self.settings.metrics.enabled else None)  # fmt: skip
        settings = self.settings
        if self.simulate:
            self.simulator = from_settings(settings, self.instruments)
            self.simulator.paused = True  # the market opens once every feed is connected
            await self.simulator.start()
            settings = with_venues(settings, self.simulator.venue_settings())
        api = ApiServer(create_app(self), settings.api)
        self.api_url = await api.start()
        self._owner.lock.update(api_url=self.api_url)
        log.info("k2 up: data in %s, API on %s", settings.data_dir, self.api_url)
        feeds_stop, writer_stop, side_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        schedule_stop = asyncio.Event()
        async with http_client() as http:
            self.feeds = build_feeds(settings, self.instruments, self.writer, http, resume)
            async with asyncio.TaskGroup() as tg:
                feeds_task = tg.create_task(run_feeds(self.feeds, feeds_stop))
                writer_task = tg.create_task(self.writer.run(writer_stop))
                tg.create_task(self._refresh_table_rows(side_stop))
                if show is not None:
                    tg.create_task(show(self, side_stop))
                if self.simulator is not None:
                    tg.create_task(self._open_market_when_live(stop))
                schedule_task = tg.create_task(run_schedule(self.schedule(), schedule_stop))
                await stop.wait()
                log.info("k2 up: stopping")
                schedule_stop.set()
                await schedule_task  # a flow run in progress finishes first
                if self.simulator is not None:
                    await self._drain_simulated_market()
                feeds_stop.set()
                await feeds_task
                writer_stop.set()
                await writer_task
                await self.writer.close()
                side_stop.set()
        await api.stop()
        if self.simulator is not None:
            await self.simulator.stop()

    async def _open_market_when_live(self, stop: asyncio.Event) -> None:
        assert self.simulator is not None
        while not stop.is_set() and not (self.feeds and all(f.stats.state == LIVE for f in self.feeds)):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # subscriptions settle
        self.simulator.open_market()

    async def _drain_simulated_market(self) -> None:
        """Close the simulated market, then wait until every trade it made has reached the writer."""
        assert self.simulator is not None
        self.simulator.paused = True
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        quiet_since = None
        while time.monotonic() < deadline:
            busy = any(f.repairer.pending() for f in self.feeds)
            quiet_since = None if busy else (quiet_since or time.monotonic())
            if quiet_since and time.monotonic() - quiet_since > 1.0:
                return
            await asyncio.sleep(0.1)
        log.warning("k2 up: gap repairs still running after %.0f s; stopping anyway", DRAIN_TIMEOUT_S)
