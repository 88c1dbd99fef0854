"""Replay pacing: stored trades in exchange-time order, each due when its event time, measured
from the first trade's and divided by the speed, has passed since the replay began."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from k2.errors import InputError
from k2.query.stream import Chunk

QUANTUM_S = 0.005  # trades due within this of a run's first go out with it


def speed(text: str) -> float | None:
    """A replay speed: a positive factor of real time, or `max` (None: no waiting)."""
    if text.lower() == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e9:
        raise InputError(f"speed must be a positive number or max, got {text!r}")
    return value


def runs(chunks: Iterator[Chunk], factor: float | None) -> Iterator[tuple[float, pa.Table]]:
    """(seconds after the replay's start when due, trades) in order, trades due together in one
    run; at max speed (None) every chunk is one run, due at once (0)."""
    first_ns: int | None = None
    for chunk in chunks:
        rows = chunk.rows
        if not len(rows):
            continue
        if factor is None:
            yield 0.0, rows
            continue
        times = pc.cast(rows.column("ts_event"), pa.int64()).to_numpy()
        if first_ns is None:
            first_ns = int(times[0])
        due = (times - first_ns) / 1e9 / factor
        at = 0
        while at < len(rows):
            end = int(np.searchsorted(due, due[at] + QUANTUM_S, side="right"))
            yield float(due[at]), rows.slice(at, end - at)
            at = end
