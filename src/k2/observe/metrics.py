"""Prometheus metrics for every stage, named `k2_<stage>_<thing>_<unit>`.

Counters and gauges cost the hot path nothing: the feeds, the writer and the archive flows keep
plain numbers in their stats objects, and `K2Collector` turns them into metric families when
Prometheus scrapes. Only the histograms are observed as things happen (`PipelineMetrics`), and the
per-trade one in batches.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from k2 import __version__
from k2.archive.status import ArchiveStatus
from k2.bus.stats import ConsumerStats, ProducerStats
from k2.hotstore.stats import WriterStats
from k2.ingest.stats import LIVE, STATES, FeedStats
from k2.observe.families import (
    archive_families,
    bus_families,
    counter,
    gauge,
    writer_families,
)
from k2.telemetry import PipelineMetrics

if TYPE_CHECKING:
    from k2.settings import Settings


class Source(Protocol):
    """What the collector reads on a scrape: the running process's live state."""

    settings: Settings
    started_at: float
    table_rows: dict[str, int]
    hot_newest: dict[str, float]
    metrics: PipelineMetrics

    def feed_stats(
        self,
    ) -> list[tuple[FeedStats, int]]: ...  # each feed with its gaps awaiting repair

    def writer_stats(self) -> WriterStats | None: ...

    def archive_status(self) -> ArchiveStatus | None: ...

    def bus_stats(self) -> tuple[ProducerStats | None, list[ConsumerStats]]:
        """The cluster shape's producer (k2 feed) and consumers (k2 ingest); none in k2 up."""
        ...


def memory_limit_bytes(configured: int | None) -> int:
    """The memory this process may use: the setting, else the cgroup limit, else physical RAM."""
    if configured:
        return configured
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number mean no limit
            return int(text)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class K2Collector(Collector):
    """Turns the live state of `k2 up` into metric families on every scrape."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        src = self.source
        yield gauge("k2_build_info", "K2 version running.", ["version"], [([__version__], 1)])
        yield from self._feeds(src.feed_stats())
        writer = src.writer_stats()
        if writer is not None:
            yield from writer_families(writer)
        yield gauge(
            "k2_hotstore_rows",
            "Rows stored in each hot table.",
            ["table"],
            [((t,), n) for t, n in sorted(src.table_rows.items())],
        )
        yield gauge(
            "k2_hotstore_newest_event_timestamp_seconds",
            "Newest event time (candles: newest window start) in each hot table.",
            ["table"],
            [((t,), ts) for t, ts in sorted(src.hot_newest.items())],
        )
        status = src.archive_status()
        if status is not None:
            yield from archive_families(status)
        yield from bus_families(*src.bus_stats())
        for histogram in src.metrics.histograms():
            yield histogram.collect()
        requests = src.metrics.api_request_counts()
        yield counter(
            "k2_api_requests_total",
            "API requests by route and status.",
            ["route", "status"],
            [(k, n) for k, n in sorted(requests.items())],
        )
        if src.settings.data_dir.is_dir():  # k2 feed keeps no data directory
            disk = shutil.disk_usage(src.settings.data_dir)
            yield gauge(
                "k2_storage_free_bytes",
                "Free space on the data directory's filesystem.",
                [],
                [((), disk.free)],
            )
            yield gauge(
                "k2_storage_size_bytes",
                "Size of the data directory's filesystem.",
                [],
                [((), disk.total)],
            )
        yield gauge(
            "k2_process_memory_limit_bytes",
            "Memory this process may use (setting, cgroup or RAM).",
            [],
            [((), memory_limit_bytes(src.settings.metrics.memory_limit_bytes))],
        )

    def _feeds(self, feeds: list[tuple[FeedStats, int]]) -> Iterator[Metric]:
        now, mono = time.time(), time.monotonic()
        started = self.source.started_at
        venue = ["venue"]
        yield gauge(
            "k2_feed_connected",
            "1 while the venue's feed is live.",
            venue,
            [((f.venue,), f.state == LIVE) for f, _ in feeds],
        )
        yield gauge(
            "k2_feed_state",
            "The feed's connection state (1 for the current one).",
            ["venue", "state"],
            [((f.venue, s), f.state == s) for f, _ in feeds for s in STATES],
        )
        yield gauge(
            "k2_feed_disconnected_seconds",
            "Seconds since the feed was last live (0 while live).",
            venue,
            [((f.venue,), mono - f.down_since if f.down_since else 0.0) for f, _ in feeds],
        )
        yield gauge(
            "k2_feed_last_message_age_seconds",
            "Seconds since the venue last sent anything (heartbeats included).",
            venue,
            [
                ((f.venue,), now - (f.last_message_ns / 1e9 if f.last_message_ns else started))
                for f, _ in feeds
            ],
        )
        yield gauge(
            "k2_feed_gaps_open",
            "Gaps detected and still being repaired.",
            venue,
            [((f.venue,), pending) for f, pending in feeds],
        )
        counters = (
            ("k2_feed_connects_total", "Connections established.", "connects"),
            (
                "k2_feed_reconnects_total",
                "Unplanned reconnects (drops, errors, watchdog).",
                "reconnects",
            ),
            (
                "k2_feed_rotations_total",
                "Planned make-before-break connection rotations.",
                "rotations",
            ),
            ("k2_feed_watchdog_trips_total", "Connections dropped for silence.", "watchdog_trips"),
            ("k2_feed_messages_total", "WebSocket messages received.", "messages"),
            (
                "k2_feed_rejects_total",
                "Messages quarantined as malformed or unexpected.",
                "rejects",
            ),
            ("k2_feed_venue_errors_total", "Error messages sent by the venue.", "venue_errors"),
            ("k2_feed_gaps_found_total", "Trade-id or window gaps detected.", "gaps_found"),
            ("k2_feed_gaps_repaired_total", "Gaps fully repaired over REST.", "gaps_repaired"),
            ("k2_feed_gaps_partial_total", "Gaps only partly repaired.", "gaps_partial"),
            (
                "k2_feed_gaps_unrecoverable_total",
                "Gaps that could not be repaired.",
                "gaps_unrecoverable",
            ),
            (
                "k2_feed_gaps_suspicious_total",
                "Id jumps beyond the venue's bound, recorded and not fetched.",
                "gaps_suspicious",
            ),
            (
                "k2_feed_suspects_rejected_total",
                "Trades held as suspect (id far beyond the cursor) and rejected.",
                "suspects_rejected",
            ),
            ("k2_feed_backfilled_trades_total", "Trades recovered over REST.", "backfilled"),
            (
                "k2_feed_late_trades_total",
                "Trades that arrived out of order and filled a hole.",
                "late_fills",
            ),
            (
                "k2_feed_sequence_gaps_total",
                "Jumps in the venue's per-connection message sequence.",
                "sequence_gaps",
            ),
            ("k2_feed_rest_requests_total", "REST requests sent.", "rest_requests"),
            (
                "k2_feed_rest_rate_limited_total",
                "REST requests answered with a rate limit.",
                "rest_rate_limited",
            ),
            ("k2_feed_rest_errors_total", "REST requests that failed.", "rest_errors"),
        )
        for name, doc, attr in counters:
            yield counter(name, doc, venue, [((f.venue,), getattr(f, attr)) for f, _ in feeds])
        pair = ["venue", "symbol"]
        symbols = [(f.venue, name, s) for f, _ in feeds for name, s in sorted(f.symbols.items())]
        yield counter(
            "k2_feed_trades_total",
            "Trades accepted (new, not duplicates).",
            pair,
            [((v, n), s.trades) for v, n, s in symbols],
        )
        yield counter(
            "k2_feed_duplicates_total",
            "Trades received again and dropped.",
            pair,
            [((v, n), s.duplicates) for v, n, s in symbols],
        )
        yield gauge(
            "k2_feed_last_trade_age_seconds",
            "Seconds since the symbol's last trade was received.",
            pair,
            [((v, n), now - max(s.last_trade_recv_ns / 1e9, started)) for v, n, s in symbols],
        )


def build_registry(source: Source) -> CollectorRegistry:
    """A registry of its own (not the library's global one): one per running process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(K2Collector(source))
    # k2_process_resident_memory_bytes, _cpu_seconds_total, ...
    ProcessCollector(namespace="k2", registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
