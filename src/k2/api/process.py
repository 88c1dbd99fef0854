"""`k2 api`: the HTTP API as a process of its own, the cluster shape's reader.

In the cluster shape capture (`k2 feed`) and storage (`k2 ingest`) are processes of their own,
so the API is one too. It serves the same routes as `k2 up` (api/app.py) against the hot store
that hotstore.url names, which the ingest workers write to, and the archive the settings name.
/health is `k2 health`'s report: the store's freshness, the archive and, in the cluster shape,
the bus (its broker, the ingest group's lag and every process's heartbeat). What it reports is
refreshed every `REFRESH_S` seconds in a thread of its own, so a slow store or an unreachable
broker never holds up a request.

An archive flow asked for over the API (`POST /api/flows/...`) runs in this process. The
archive's locks are PostgreSQL advisory locks when the catalog is PostgreSQL, so a run that
finds `k2 flows serve` (or another `k2 api`) running the same flow skips, as under `k2 up`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from k2.archive import ops
from k2.archive.lake import Lake
from k2.archive.status import ArchiveStatus
from k2.archive.tables import TABLES
from k2.bus.stats import ConsumerStats, ProducerStats
from k2.bus.status import BusView
from k2.flows import API
from k2.flows.runtime import ArchiveRuntime
from k2.hotstore.owner import OwnedStore
from k2.hotstore.stats import WriterStats
from k2.hotstore.store import HotStore
from k2.ingest.stats import FeedStats
from k2.instruments import Instruments
from k2.observe.health import HealthInputs
from k2.observe.hot import hot_state
from k2.settings import Settings

log = logging.getLogger(__name__)

REFRESH_S = 5.0  # how often the rows, the archive's state and the bus are read again
# the ArchiveStatus fields that ops.load_status fills from the store
_LOADED = (
    "tables",
    "maintenance",
    "maintenance_at",
    "maintenance_ok",
    "maintenance_success_at",
    "reconcile",
    "reconcile_at",
)


@dataclass
class ApiProcess:
    """What `k2 api` serves from: the store, the archive and the bus, read every few seconds."""

    settings: Settings
    instruments: Instruments
    cluster: bool  # read the bus (bus.bootstrap_servers is set)
    store: HotStore | None = None
    table_rows: dict[str, int] = field(default_factory=dict)
    hot_newest: dict[str, float] = field(default_factory=dict)
    bus: BusView | None = None
    archive: ArchiveRuntime | None = None
    lake: Lake | None = None  # the archive, for reads of what hot no longer holds
    started_at: float = field(default_factory=time.time)
    refreshed_at: float = 0.0  # when the last refresh finished (0: not yet)
    _owner: OwnedStore | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        from k2.telemetry import PipelineMetrics

        self.metrics = PipelineMetrics()

    # -- lifecycle ------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the store and the archive, read everything once, then keep it fresh."""
        self._owner = OwnedStore(self.settings.data_dir, self.settings.hotstore, "k2 api")
        self.store = self._owner.store
        lake = self.lake = Lake(self.settings.archive, self.settings.data_dir)
        metrics = self.metrics if self.settings.metrics.enabled else None
        self.archive = ArchiveRuntime(self.store, lake, self.settings, metrics=metrics)
        self.refresh()
        self._thread = threading.Thread(target=self._keep_fresh, name="k2-api-refresh", daemon=True)
        self._thread.start()

    def hold(self, url: str) -> None:
        """Name the API's URL in the data directory's lock: commands on it ask this process."""
        assert self._owner is not None
        self._owner.lock.update(api_url=url)

    def close(self) -> None:
        self._stop.set()
        if self.archive is not None:
            self.archive.stop_requested.set()  # a flow run in progress stops at its next safe point
        if self._thread is not None:
            self._thread.join(timeout=REFRESH_S + 10)
        if self.archive is not None:
            self.archive.lake.close()
        if self._owner is not None:
            self._owner.close(True)

    def refresh(self) -> None:
        """Read the rows per table, the archive's state and (cluster shape) the bus again."""
        assert self.store is not None and self.archive is not None
        self.table_rows, self.hot_newest = hot_state(self.store, self.venues())
        status = ArchiveStatus()
        ops.load_status(self.store, status, TABLES)
        # what the ops tables hold (runs of any process); this process's own counters stay
        for name in _LOADED:
            setattr(self.archive.status, name, getattr(status, name))
        if self.cluster:
            from k2.bus.status import read_bus

            self.bus = read_bus(self.settings.bus)
        self.refreshed_at = time.time()

    def _keep_fresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            try:
                self.refresh()
            except Exception:  # the store or the broker is down: /health says so; try again
                log.warning(
                    "k2 api: could not refresh the store's and the bus's state", exc_info=True
                )

    # -- what /metrics and /health read ----------------------------------------------------------
    def venues(self) -> list[str]:
        return [
            v for v, syms in self.instruments.items() if syms and self.settings.venue(v).enabled
        ]

    def feed_stats(self) -> list[tuple[FeedStats, int]]:
        return []  # the feeds live in the k2 feed processes: their /metrics and heartbeats

    def writer_stats(self) -> WriterStats | None:
        return None  # in the k2 ingest processes

    def archive_status(self) -> ArchiveStatus | None:
        return self.archive.status if self.archive is not None else None

    def bus_stats(self) -> tuple[ProducerStats | None, list[ConsumerStats]]:
        return None, []  # each k2 feed and k2 ingest serves its own

    def health_inputs(self) -> HealthInputs:
        assert self.archive is not None
        return HealthInputs(
            time.time(),
            False,  # the feed rows come from the bus's heartbeats, as in `k2 health`
            self.venues(),
            self.settings.data_dir,
            self.archive.status,
            dict(self.table_rows),
            dict(self.hot_newest),
            bus=self.bus,
            prefect=(API.started_at, API.ready_at, API.error),
        )
