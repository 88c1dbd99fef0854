"""What the archive flows run against, and what they remember between runs.

`k2 up` installs its own store and lake (`using(runtime)`); `k2 offload` and friends on a stopped
data directory open them (`standalone(settings)`); the flows find them with `current()`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from k2.archive.lake import Lake
from k2.archive.status import ArchiveStatus
from k2.errors import ConfigError, Stopping
from k2.hotstore.store import HotStore
from k2.settings import Settings
from k2.telemetry import PipelineMetrics


@dataclass
class ArchiveRuntime:
    store: HotStore
    lake: Lake
    settings: Settings
    status: ArchiveStatus = field(default_factory=ArchiveStatus)
    metrics: PipelineMetrics | None = None  # histograms of the process serving /metrics, if any
    # the process is stopping
    stop_requested: threading.Event = field(default_factory=threading.Event)

    def checkpoint(self, table: str, point: str) -> None:
        """Called at the safe points of an offload: give up there if the process is stopping."""
        if self.stop_requested.is_set():
            raise Stopping(
                f"{table}: stopped at {point}, the process is stopping (the next run resumes)"
            )

    @contextlib.contextmanager
    def guard(self, flow: str) -> Iterator[bool]:
        """Yield True if no other run of `flow` is in progress (here or in another process)."""
        with self.lake.locks.try_hold(f"flow-{flow}") as held:
            if not held:
                self.status.skipped[flow] = self.status.skipped.get(flow, 0) + 1
            yield held


_lock = threading.Lock()
_active: ArchiveRuntime | None = None


@contextlib.contextmanager
def using(runtime: ArchiveRuntime) -> Iterator[ArchiveRuntime]:
    """Make `runtime` the one flows use, for the duration of the block."""
    global _active  # noqa: PLW0603 - the process-wide runtime that flows look up
    with _lock:
        previous, _active = _active, runtime
    try:
        yield runtime
    finally:
        with _lock:
            _active = previous


def current() -> ArchiveRuntime:
    """Return the runtime flows run against right now."""
    if _active is None:
        raise ConfigError(
            "no K2 runtime: run archive flows through `k2 up`, or `k2 offload`/`k2 maintain`/"
            "`k2 reconcile` (which open the data directory themselves)"
        )
    return _active


@contextlib.contextmanager
def runtime_on(store: HotStore, settings: Settings) -> Iterator[ArchiveRuntime]:
    """Open the archive next to `store` and make them the flows' runtime, for the block."""
    lake = Lake(settings.archive, settings.data_dir)
    try:
        with using(ArchiveRuntime(store, lake, settings)) as runtime:
            yield runtime
    finally:
        lake.close()


@contextlib.contextmanager
def standalone(settings: Settings, role: str) -> Iterator[ArchiveRuntime]:
    """Own the data directory's hot store and open the archive, for a run outside `k2 up`."""
    from k2.hotstore.owner import owned  # the store owner loads chDB: only when a run needs it

    with (
        owned(settings.data_dir, settings.hotstore, role) as owner,
        runtime_on(owner.store, settings) as runtime,
    ):
        yield runtime
