"""/metrics for the cluster shape's processes (`k2 feed`, `k2 ingest`), on bus.metrics_port."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from k2.archive.status import ArchiveStatus
from k2.bus.stats import ConsumerStats, ProducerStats
from k2.errors import InputError
from k2.hotstore.stats import WriterStats
from k2.ingest.stats import FeedStats
from k2.settings import Settings
from k2.telemetry import PipelineMetrics

if TYPE_CHECKING:
    from k2.ingest.feed import Feed


@dataclass
class ProcessState:
    """What one cluster process shows (the metrics Source): its feeds, or its writer and
    consumers, and the bus."""

    settings: Settings
    feeds: Sequence[Feed] = ()
    producer: ProducerStats | None = None
    writer: WriterStats | None = None
    consumers: list[ConsumerStats] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    table_rows: dict[str, int] = field(default_factory=dict)
    hot_newest: dict[str, float] = field(default_factory=dict)
    metrics: PipelineMetrics = field(default_factory=PipelineMetrics)

    def feed_stats(self) -> list[tuple[FeedStats, int]]:
        return [(f.stats, f.repairer.pending()) for f in self.feeds]

    def writer_stats(self) -> WriterStats | None:
        return self.writer

    def archive_status(self) -> ArchiveStatus | None:
        return None

    def bus_stats(self) -> tuple[ProducerStats | None, list[ConsumerStats]]:
        return self.producer, self.consumers


def serve_metrics(settings: Settings, **parts: Any) -> Any:
    """Serve /metrics on 127.0.0.1:bus.metrics_port (none if 0); return the server to shut down."""
    if not settings.bus.metrics_port:
        return None
    from prometheus_client import start_http_server

    from k2.observe.metrics import build_registry

    registry = build_registry(ProcessState(settings, **parts))
    host, port = settings.api.host, settings.bus.metrics_port
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        raise InputError(
            f"cannot serve /metrics on {host}:{port} (setting bus.metrics_port): "
            f"{err.strerror or err}"
        ) from None
    return server
