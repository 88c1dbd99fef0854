"""What the benchmark scripts share: a simulator in its own process, its settings, and percentiles."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from k2.instruments import load_instruments


def start_simulator(rate: float, tick_ms: float) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start `k2 simulate` (no faults) and return it with the K2_ variables that point K2 at it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "k2", "simulate", "--port", "0", "--faults", "none", "--rate", str(rate),
         "--tick-ms", str(tick_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    env = {}
    for _ in range(2 * len(load_instruments())):  # its first lines: a WebSocket and a REST URL per venue
        key, _, value = proc.stdout.readline().decode().strip().removeprefix("export ").partition("=")
        env[key] = value
    return proc, env


def venues_from_env(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """K2_VENUES__<VENUE>__<FIELD> variables as the `venues` settings section."""
    out: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        _, venue, field = key.lower().split("__")
        out.setdefault(venue, {})[field] = value
    return out


def pct(values: Sequence[int], q: float) -> float:
    """The q-quantile of nanosecond values, in milliseconds."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6 if ordered else float("nan")
