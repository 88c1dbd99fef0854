"""A long run of `k2 up` against the simulator, watching for anything that grows without bound.

The simulator serves the default instruments (34) at a realistic rate, `--rate` trades/s per
symbol, with bursts of `--burst-factor` times that for `--burst-for` seconds every
`--burst-every` seconds. `k2 up` runs as its own process with its usual schedule (an offload every
15 minutes); every `--flows-every` minutes the bench also runs maintenance and reconcile through the
API, as the daily schedule would.

Every `--sample` seconds it records the `k2 up` process's RSS, CPU time and open files, and the
disk use of each hot table and each archive table, into `--out` (JSON lines, one sample a line).
At the end it fits a line to each series over the run after the first `--warmup` minutes and
reports the growth per hour. It fails (exit 1) where a slope exceeds its bound:

- RSS: 64 MB/h (caches fill in the warm-up; after it, steady use must stay flat);
- open files: 10/h;
- CPU: 10 percentage points of one core per hour;
- each offload's duration, and maintenance's and reconcile's: 50 % of their first value (after
  the warm-up) per hour.

Disk use grows with the data (hot retention, default 7 days, keeps it bounded only over days); its
growth per hour is reported per table, with the trades captured per hour, and held to the bound
the bytes per trade allow: 200 bytes per trade captured over the hot tables together.

Usage: python bench/burnin.py --hours H [--rate R] [--out FILE]
Last line: `burnin_rss_mb_per_h: <slope>`
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from _common import (  # bench/_common.py
    cpu_reference,
    free_port,
    scratch_dir,
    start_simulator,
    stop_process,
)

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")
BOUNDS = {"rss_mb": 64.0, "open_files": 10.0, "cpu_pct": 10.0}
BYTES_PER_TRADE_BOUND = 200.0


def simulator(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """The simulator with the run's bursts."""
    env = os.environ | {
        "K2_SIMULATOR__BURST_EVERY_S": str(args.burst_every),
        "K2_SIMULATOR__BURST_FOR_S": str(args.burst_for),
        "K2_SIMULATOR__BURST_FACTOR": str(args.burst_factor),
    }
    return start_simulator(args.rate, env=env)


def process_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu_s = (int(stat[11]) + int(stat[12])) / TICKS  # utime + stime
    return {
        "rss_mb": rss_kb / 1024,
        "cpu_s": cpu_s,
        "open_files": len(os.listdir(f"/proc/{pid}/fd")),
    }


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def disk_sample(data: Path) -> dict[str, int]:
    """Bytes on disk per hot table (chDB links each table's directory) and per archive table."""
    out: dict[str, int] = {}
    tables = data / "hot" / "data" / "k2"
    if tables.is_dir():
        for link in tables.iterdir():
            out[f"hot/{link.name}"] = du(link.resolve())
    warehouse = data / "lake" / "warehouse"
    if warehouse.is_dir():
        for namespace in warehouse.iterdir():
            for table in namespace.iterdir() if namespace.is_dir() else []:
                out[f"archive/{table.name}"] = du(table)
    return out


def scrape(client: httpx.Client, api: str) -> dict[str, float]:
    """The counters the run follows, from /metrics."""
    wanted = {
        "k2_writer_rows_total": "rows",
        "k2_offload_cycle_duration_seconds_sum": "offload_s_sum",
        "k2_offload_cycle_duration_seconds_count": "offload_count",
    }
    found: dict[str, float] = {}
    for line in client.get(f"{api}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        key = wanted.get(name.split("{")[0])
        if key is not None and (key != "rows" or 'table="silver_trades"' in name):
            found[key] = found.get(key, 0.0) + float(value)
    return found


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per hour (0 with fewer than 3)."""
    if len(points) < 3:
        return 0.0
    fit = statistics.linear_regression([t for t, _ in points], [v for _, v in points])
    return fit.slope * 3600


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, required=True, help="how long to run")
    parser.add_argument("--rate", type=float, default=5.0, help="trades/s per symbol")
    parser.add_argument("--burst-every", type=float, default=300.0, help="seconds between bursts")
    parser.add_argument("--burst-for", type=float, default=20.0, help="seconds a burst lasts")
    parser.add_argument("--burst-factor", type=float, default=20.0, help="the rate in a burst, x")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=10.0, help="minutes left out of the fits")
    parser.add_argument("--flows-every", type=float, default=20.0, help="minutes between flows")
    parser.add_argument("--out", type=Path, help="samples as JSON lines (default: a temp file)")
    args = parser.parse_args()

    print(f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)", flush=True)
    data = scratch_dir("k2-burnin-")
    out = args.out or data.parent / f"{data.name}-samples.jsonl"
    sim, exports = simulator(args)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    up = subprocess.Popen(
        [sys.executable, "-m", "k2", "up", "--data-dir", str(data), "--port", str(port)],
        env=os.environ | exports,
        stdout=subprocess.DEVNULL,
        stderr=open(data.parent / f"{data.name}-k2.log", "wb"),  # noqa: SIM115 - lives as long as k2 up
    )
    samples: list[dict[str, object]] = []
    flows: list[dict[str, float]] = []
    began = time.monotonic()
    end = began + args.hours * 3600
    next_flows = began + args.flows_every * 60
    print(
        f"k2 up (pid {up.pid}) on {data}, {args.rate:g} trades/s per symbol with x"
        f"{args.burst_factor:g} bursts of {args.burst_for:g} s every {args.burst_every:g} s, for "
        f"{args.hours:g} h; samples in {out}",
        flush=True,
    )
    try:
        with httpx.Client(timeout=1800) as client, out.open("w") as sink:
            while time.monotonic() < end:
                if up.poll() is not None:
                    sys.exit(f"burnin: k2 up exited with {up.returncode}")
                try:
                    counters = scrape(client, api)
                except httpx.HTTPError:
                    counters = {}  # not serving yet
                if counters and time.monotonic() >= next_flows:
                    for flow in ("maintenance", "reconcile"):
                        started = time.monotonic()
                        client.post(f"{api}/api/v1/flows/{flow}", json={}).raise_for_status()
                        flows.append(
                            {
                                "t": started - began,
                                "flow": flow,
                                "seconds": time.monotonic() - started,
                            }
                        )
                    next_flows += args.flows_every * 60
                sample: dict[str, object] = {"t": time.monotonic() - began}
                sample |= process_sample(up.pid) | counters | {"disk": disk_sample(data)}
                samples.append(sample)
                sink.write(json.dumps(sample) + "\n")
                sink.flush()
                if len(samples) % max(1, int(600 / args.sample)) == 0:
                    print(
                        f"{sample['t'] / 60:5.0f} min: RSS {sample['rss_mb']:.0f} MB, "
                        f"{sample['open_files']} open files, "
                        f"{counters.get('rows', 0):,.0f} trades in silver",
                        flush=True,
                    )
                time.sleep(max(0.0, args.sample - (time.monotonic() - began) % args.sample))
    finally:
        stop_process(up, 60)  # k2 up's own grace period is 15 s
        stop_process(sim)
    report(samples, flows, args)


def report(
    samples: list[dict[str, object]], flows: list[dict[str, float]], args: argparse.Namespace
) -> None:
    steady = [s for s in samples if float(s["t"]) >= args.warmup * 60]
    if len(steady) < 3:
        sys.exit("burnin: too short to fit (run longer than the warm-up)")
    failed: list[str] = []

    def series(key: str) -> list[tuple[float, float]]:
        return [(float(s["t"]), float(s[key])) for s in steady if key in s]

    cpu = [
        (
            float(b["t"]),
            100 * (float(b["cpu_s"]) - float(a["cpu_s"])) / (float(b["t"]) - float(a["t"])),
        )
        for a, b in itertools.pairwise(steady)
    ]
    print("\nper hour, after the warm-up (least-squares slope), against its bound:")
    for name, points in (
        ("rss_mb", series("rss_mb")),
        ("open_files", series("open_files")),
        ("cpu_pct", cpu),
    ):
        slope = slope_per_hour(points)
        values = [v for _, v in points]
        verdict = "ok" if slope <= BOUNDS[name] else "UNBOUNDED"
        if verdict != "ok":
            failed.append(name)
        print(
            f"  {name:10} {slope:+9.2f}/h (bound {BOUNDS[name]:g}/h; from {values[0]:.1f} to "
            f"{values[-1]:.1f}, max {max(values):.1f})  {verdict}"
        )
    rows = series("rows")
    trades_h = slope_per_hour(rows)
    first, last = steady[0]["disk"], steady[-1]["disk"]
    assert isinstance(first, dict) and isinstance(last, dict)
    hot_total = 0.0
    print(f"  disk, with {trades_h:,.0f} trades/h captured:")
    for table in sorted(last):
        points = [(float(s["t"]), float(s["disk"].get(table, 0))) for s in steady]
        slope = slope_per_hour(points)
        if table.startswith("hot/"):
            hot_total += slope
        print(f"    {table:32} {slope / 2**20:+9.2f} MB/h (now {last[table] / 2**20:,.1f} MB)")
    per_trade = hot_total / trades_h if trades_h else 0.0
    verdict = "ok" if per_trade <= BYTES_PER_TRADE_BOUND else "UNBOUNDED"
    if verdict != "ok":
        failed.append("hot disk")
    print(
        f"  hot tables together: {per_trade:.1f} bytes per trade captured "
        f"(bound {BYTES_PER_TRADE_BOUND:g})  {verdict}"
    )

    # Each offload's own duration, from the counters' steps between samples, for the offloads that
    # ended after the warm-up. (A mean so far rose by itself: the first offload, right after the
    # start, has a few minutes of trades to archive where the others have fifteen.)
    def counter(sample: dict[str, object], key: str) -> float:
        return float(sample.get(key, 0) or 0)  # type: ignore[arg-type]  # absent before the first

    offload = [
        (
            float(b["t"]),
            (counter(b, "offload_s_sum") - counter(a, "offload_s_sum"))
            / (counter(b, "offload_count") - counter(a, "offload_count")),
        )
        for a, b in itertools.pairwise(steady)
        if counter(b, "offload_count") > counter(a, "offload_count")
    ]
    timed = {"offload (each)": offload}
    for flow in ("maintenance", "reconcile"):
        timed[flow] = [(f["t"], f["seconds"]) for f in flows if f["flow"] == flow]
    for name, points in timed.items():
        if len(points) < 3:
            print(f"  {name}: {len(points)} run(s), too few to fit")
            continue
        slope = slope_per_hour(points)
        bound = 0.5 * points[0][1]
        verdict = "ok" if slope <= bound else "UNBOUNDED"
        if verdict != "ok":
            failed.append(name)
        print(
            f"  {name:22} {slope:+8.2f} s/h (bound {bound:.2f} s/h; first {points[0][1]:.2f} s, "
            f"last {points[-1][1]:.2f} s)  {verdict}"
        )
    rss_slope = slope_per_hour(series("rss_mb"))
    print("burn-in: " + ("FAILED on " + ", ".join(failed) if failed else "every series bounded"))
    print(f"burnin_rss_mb_per_h: {rss_slope:.2f}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
