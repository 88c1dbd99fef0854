"""A small Prometheus histogram that takes a whole batch of observations in one call.

The ingest path observes one latency per trade; doing that one `observe()` at a time would cost
more than the rest of the writer's per-trade work. Here a batch is binned with numpy in one step.
Exported on scrape by the collector as a standard Prometheus histogram.
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

    def labelsets(self) -> list[tuple[str, ...]]:
        with self._lock:
            return list(self._series)

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
