"""What the benchmark scripts share: a simulator in its own process, its settings, percentiles, and
a reference of the machine's speed at the time of a run."""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from k2.simulator.simulator import read_exports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_simulator(
    rate: float,
    tick_ms: float = 20.0,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    stderr: Any = subprocess.DEVNULL,
) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start `k2 simulate` (no faults; `extra` arguments after ours) and return it with the K2_
    variables that point K2 at it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "k2",
            "simulate",
            "--port",
            "0",
            "--faults",
            "none",
            "--rate",
            str(rate),
            "--tick-ms",
            str(tick_ms),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
    )
    assert proc.stdout is not None
    return proc, read_exports(proc.stdout)


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """Stop a process the bench started (SIGTERM); kill it if it is still busy after `grace_s`
    (a simulator at the end of a firehose)."""
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def scratch_dir(prefix: str) -> Path:
    """A new temporary data directory, removed when this process exits (a firehose phase leaves
    ~700 MB in one; they used to pile up in /tmp)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


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


def binance_baseline(raw: bytes, recv: int) -> list[dict]:  # type: ignore[type-arg]
    """A Binance trade message normalized as plain Python would: json.loads and dicts."""
    d = json.loads(raw)["data"]
    t = d["T"]
    return [
        {
            "exchange": "binance",
            "symbol": d["s"],
            "trade_id": int(d["t"]),
            "price": Decimal(d["p"]),
            "amount": Decimal(d["q"]),
            "taker_side": "sell" if d["m"] else "buy",
            "ts_event": t * 1000 if t > 10**14 else t * 1_000_000,
            "ts_recv": recv,
        }
    ]


_REFERENCE_MESSAGE = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1795961828201809,"s":"BTCUSDT","t":1000000,'
    b'"p":"60000.00000000","q":"0.05195850","T":1795961828202771,"m":false,"M":true}}'
)


def cpu_reference(seconds: float = 1.0) -> float:
    """The machine's speed now: messages/s through `binance_baseline` on one core (the baseline of
    bench/parse.py). This VM's speed moves by up to 2x within minutes: figures compare between runs
    only where their references agree."""
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(10_000):
            binance_baseline(_REFERENCE_MESSAGE, 1)
        best = max(best, 10_000 / (time.perf_counter() - start))
    return best


def run_phase(script: Path, args: Sequence[str]) -> dict[str, object]:
    """Run `script --phase ARGS` in a fresh process (its peak RSS is its own) and return the JSON
    object its last line prints."""
    out = subprocess.run(
        [sys.executable, str(script), "--phase", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"phase {list(args)} failed:\n{out.stderr[-3000:]}")
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def histogram_quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float:
    """The q-quantile of a histogram's observations (per-bucket counts, the last one +Inf),
    interpolated linearly inside its bucket as Prometheus's histogram_quantile does; NaN if empty.
    """
    total = sum(counts)
    if not total:
        return float("nan")
    rank, seen = q * total, 0
    for i, count in enumerate(counts):
        if seen + count >= rank and count:
            if i >= len(bounds):  # the +Inf bucket: the highest finite bound is all we know
                return bounds[-1]
            low = bounds[i - 1] if i else 0.0
            return low + (bounds[i] - low) * (rank - seen) / count
        seen += count
    return bounds[-1]


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory (VmHWM), in MB; NaN if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def load_synthetic(
    store: object, trades: int, symbols: list[str], start_ns: int, span_ns: int
) -> float:
    """Insert `trades` synthetic Binance trades of `symbols`, evenly over [start_ns, +span_ns),
    through the ingest table (bronze, silver and the candles follow), and wait for the merges;
    return the seconds it took."""
    names = "[" + ",".join(f"'{s}'" for s in symbols) + "]"
    canon = "[" + ",".join(f"'{s[:-4]}/USDT'" for s in symbols) + "]"
    n = len(symbols)
    began = time.monotonic()
    store.execute(  # type: ignore[attr-defined]
        f"""
        INSERT INTO k2.ingest_trades
        SELECT 'binance', {names}[number % {n} + 1], {canon}[number % {n} + 1], intDiv(number, {n}),
               toDecimal128(6000000 + number % 1000, 18) / 100, toDecimal128('0.01', 18), 'true',
               number % 2 = 0,
               fromUnixTimestamp64Nano(toInt64({start_ns} + number * {span_ns // trades}), 'UTC'),
               fromUnixTimestamp64Nano(toInt64({start_ns} + number * {span_ns // trades}), 'UTC'),
               'bench', 'ws', false, '', number + 1, 'bench'
        FROM numbers({trades})"""
    )
    while store.rows("SELECT count() FROM system.merges")[0][0]:  # type: ignore[attr-defined]
        time.sleep(0.5)
    return time.monotonic() - began
