"""The histograms K2 observes where the work happens: a leaf module every stage may use.

The ingest path observes one latency per trade; doing that one `observe()` at a time would cost
more than the rest of the writer's per-trade work. Here a batch is binned with numpy in one step.
`observe.metrics` exports them on scrape as standard Prometheus histograms, with the counters and
gauges it reads from each stage's own stats.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np
from prometheus_client.core import HistogramMetricFamily


class Histogram:
    """Cumulative buckets per label set; `observe` and `observe_many` are thread-safe."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
    ) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError(f"{name}: buckets must be a non-empty increasing sequence")
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.labelnames = tuple(labelnames)
        self._series: dict[tuple[str, ...], tuple[np.ndarray, list[float]]] = {}  # counts, [sum]
        self._lock = threading.Lock()

    def _get(self, labels: tuple[str, ...]) -> tuple[np.ndarray, list[float]]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {labels}")
        found = self._series.get(labels)
        if found is None:  # one count per finite bound, plus the +Inf bucket
            found = self._series[labels] = (np.zeros(len(self.bounds) + 1, np.int64), [0.0])
        return found

    def observe(self, value: float, *labels: str) -> None:
        index = int(np.searchsorted(self.bounds, value, side="left"))  # le: value <= bound
        with self._lock:
            counts, total = self._get(labels)
            counts[index] += 1
            total[0] += value

    def observe_many(self, values: np.ndarray, *labels: str) -> None:
        if len(values) == 0:
            return
        binned = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds) + 1
        )
        with self._lock:
            counts, total = self._get(labels)
            counts += binned
            total[0] += float(values.sum())

    def collect(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            series = [
                (labels, counts.copy(), total[0])
                for labels, (counts, total) in self._series.items()
            ]
        for labels, counts, total in series:
            cumulative = np.cumsum(counts)
            buckets = [
                (_le(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)
            ]
            buckets.append(("+Inf", float(cumulative[-1])))
            family.add_metric(list(labels), buckets, total)
        return family


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


ROW_BUCKETS = (1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 50_000, 100_000)
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STAGE_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    1.0,
    2.0,
    5.0,
    30.0,
)
SLOW_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class PipelineMetrics:
    """The histograms, observed where the work happens (thread-safe), and API request counts."""

    def __init__(self) -> None:
        self.writer_batch_rows = Histogram(
            "k2_writer_batch_rows", "Rows per insert batch.", ROW_BUCKETS
        )
        self.writer_insert = Histogram(
            "k2_writer_insert_duration_seconds",
            "Duration of one batch insert (bronze, silver and candles).",
            FAST_BUCKETS,
        )
        self.ingest_latency = Histogram(
            "k2_writer_ingest_latency_seconds",
            "Per trade: local receive to committed in the hot store.",
            LATENCY_BUCKETS,
        )
        self.ingest_stage = Histogram(
            "k2_writer_stage_latency_seconds",
            "Per trade, the latency of each stage on its way into the hot store: receive (venue "
            "stamp to arrival, the venue's clock against ours included), parse (arrival to handed "
            "to the writer: parse, checks, the feed's queue), queue (handed to the insert's "
            "start), insert (the insert's start to committed, i.e. visible).",
            STAGE_BUCKETS,
            ("stage",),
        )
        self.offload_duration = Histogram(
            "k2_offload_duration_seconds",
            "Offload of one table, per run.",
            SLOW_BUCKETS,
            ("table",),
        )
        self.offload_cycle = Histogram(
            "k2_offload_cycle_duration_seconds", "One offload cycle over every table.", SLOW_BUCKETS
        )
        self.api_duration = Histogram(
            "k2_api_request_duration_seconds", "API request duration.", FAST_BUCKETS, ("route",)
        )
        self.api_requests: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def histograms(self) -> list[Histogram]:
        return [
            self.writer_batch_rows,
            self.writer_insert,
            self.ingest_latency,
            self.ingest_stage,
            self.offload_duration,
            self.offload_cycle,
            self.api_duration,
        ]

    def batch_committed(
        self, rows: int, insert_s: float, recv_ns: np.ndarray, committed_ns: int
    ) -> None:
        self.writer_batch_rows.observe(rows)
        self.writer_insert.observe(insert_s)
        if len(recv_ns):
            self.ingest_latency.observe_many((committed_ns - recv_ns) / 1e9)

    def stages(
        self,
        event_ns: np.ndarray,
        recv_ns: np.ndarray,
        handoffs: tuple[Sequence[int], Sequence[int], Sequence[int]] | None,
        started_ns: int,
        committed_ns: int,
    ) -> None:
        """Observe a committed batch's trades in `ingest_stage`: receive per trade, parse and queue
        per chunk (each of its trades counted), insert per batch. `handoffs`: per chunk, its rows,
        its oldest arrival and when it was handed to the writer (hotstore.batch.Handoffs); where
        that is not known (the cluster shape's bus), parse and queue are not observed."""
        stage = self.ingest_stage
        if len(recv_ns):
            stage.observe_many((recv_ns - event_ns) / 1e9, "receive")
        if handoffs is not None:
            rows, first_recv, handed = (np.asarray(a, np.int64) for a in handoffs)
            stage.observe_many(np.repeat((handed - first_recv) / 1e9, rows), "parse")
            if started_ns:
                stage.observe_many(np.repeat((started_ns - handed) / 1e9, rows), "queue")
        if started_ns and len(recv_ns):
            stage.observe_many(np.full(len(recv_ns), (committed_ns - started_ns) / 1e9), "insert")

    def api_request_counts(self) -> dict[tuple[str, str], int]:
        """API requests so far by (route, status), as of now."""
        with self._lock:
            return dict(self.api_requests)

    def api_request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, str(status))
            self.api_requests[key] = self.api_requests.get(key, 0) + 1
        self.api_duration.observe(seconds, route)
