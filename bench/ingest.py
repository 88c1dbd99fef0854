"""Simulator firehose -> the `k2 up` pipeline -> committed in silver and the six candle tables.

The simulator runs as its own process; the k2 up pipeline (feeds, writer, chDB, API) runs in a
fresh process per phase, so each phase's peak RSS is its own:

1. throughput: the simulator offers 6,000 trades/s per instrument (204,000/s with the default 34),
   more than k2 takes on this machine; rows committed to silver per second (every batch also
   updates all six candle tables inside the same insert).
2. latency at 5,000 trades/s: from the simulator stamping a trade (1 ms clock) to the batch holding
   it being committed, i.e. visible in silver; p50/p99; with metrics on, also by stage (receive,
   parse, queue, insert) from the k2_writer_stage_latency_seconds histogram.
3. query: "last 100 1m candles of one symbol" with 10 million trades stored; p50/p99 over 300
   queries after one untimed query per symbol.

With `--metrics both`, phases 1 and 2 run with metrics on (histograms observed, /metrics scraped
every 5 s) and off, in the same run: the overhead of metrics on the ingest path.

Usage: python bench/ingest.py [--seconds S] [--metrics on|off|both] [--rounds N] [--offload]
Last line: `ingest_throughput: <trades/s> trades/s`
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from _common import (  # bench/_common.py
    cpu_reference,
    histogram_quantile,
    load_synthetic,
    pct,
    peak_rss_mb,
    run_phase,
    scratch_dir,
    start_simulator,
    stop_process,
    venues_from_env,
)

HERE = Path(__file__).resolve()
# Trades/s per instrument the simulator offers in the throughput phases. At 4,000 (136,000/s in
# all) k2 kept up for most of a phase once the ingest path got faster, which measures the offer,
# not k2.
FIREHOSE = "6000"


def pipeline_phase(
    rate: float,
    tick_ms: float,
    warmup: float,
    seconds: float,
    metrics: bool,
    latency: bool,
    offload: bool = False,
) -> dict[str, object]:
    """Run the k2 up pipeline in this process against a simulator process; measure silver commits.

    With `latency`, every committed trade's latency is kept (an 8-byte array slot each, so the
    measurement itself does not weigh on the peak RSS it reports). With `offload`, one offload
    cycle of all ten tables runs inside the window, as `k2 up` runs one every 15 minutes.
    """
    import httpx

    from k2.embedded import Embedded
    from k2.ingest.stats import LIVE
    from k2.instruments import load_instruments
    from k2.settings import load_settings

    sim, env = start_simulator(rate, tick_ms)
    venues = venues_from_env(env)
    data = scratch_dir("k2-bench-")
    # The archive schedule is off: an offload cycle landing inside a phase (they run at :00, :15,
    # :30, :45) would make its figures depend on the wall clock.
    settings = load_settings(
        data_dir=data,
        venues=venues,
        api={"port": 0},
        metrics={"enabled": metrics},
        archive={"schedule_enabled": False},
    )
    platform = Embedded(settings, load_instruments())
    latencies = array.array("q")
    result: dict[str, object] = {}

    def on_commit(batch: pa.Table, committed: int) -> None:
        if measuring and latency:
            ts_event = pc.cast(batch.column("ts_event"), pa.int64()).combine_chunks().to_numpy()
            latencies.extend((committed - ts_event).tolist())

    measuring = False
    scrapes = 0

    def stage_counts() -> dict[str, np.ndarray]:
        """The stage histogram's bucket counts now, by stage (not cumulative)."""
        hist = platform.metrics.ingest_stage
        with hist._lock:
            return {labels[0]: counts.copy() for labels, (counts, _) in hist._series.items()}

    async def scrape(url: str) -> None:
        """Scrape /metrics every 5 s, as Prometheus would (its default is every 15 s)."""
        nonlocal scrapes
        async with httpx.AsyncClient() as client:
            while True:
                resp = await client.get(f"{url}/metrics")
                resp.raise_for_status()  # (before the first commit, the latency histogram is empty)
                scrapes += 1 if b"k2_writer_ingest_latency_seconds_bucket" in resp.content else 0
                await asyncio.sleep(5)

    async def main() -> None:
        nonlocal measuring
        stop = asyncio.Event()
        task = asyncio.create_task(platform.run(stop))
        while (  # noqa: ASYNC110 - the platform exposes a state, not an event
            platform.writer is None
            or not platform.feeds
            or not all(f.stats.state == LIVE for f in platform.feeds)
        ):
            await asyncio.sleep(0.1)
        platform.writer.listeners.append(on_commit)
        scraper = asyncio.create_task(scrape(platform.api_url)) if metrics else None
        await asyncio.sleep(warmup)
        before = platform.writer.stats.rows.get("silver_trades", 0)
        stages_before = stage_counts()
        measuring, start = True, time.monotonic()
        if offload:
            async with httpx.AsyncClient(timeout=600) as client:
                resp = await client.post(f"{platform.api_url}/api/flows/offload", json={})
                resp.raise_for_status()
                result["offloaded_rows"] = sum(
                    r["rows"] for r in resp.json().values() if isinstance(r, dict)
                )
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - start)))
        measuring = False
        elapsed = time.monotonic() - start
        if metrics and latency:
            bounds = list(platform.metrics.ingest_stage.bounds)
            result["stages"] = {
                stage: [
                    histogram_quantile(bounds, counts - stages_before.get(stage, 0), q) * 1000
                    for q in (0.5, 0.99)
                ]
                for stage, counts in stage_counts().items()
            }
        result["silver_rows_per_s"] = (
            platform.writer.stats.rows.get("silver_trades", 0) - before
        ) / elapsed
        result["backpressure_s"] = platform.writer.stats.backpressure_s
        if not latency and not offload:  # the firehose: what a trade costs on disk, per table
            assert platform.store is not None
            parts = await asyncio.to_thread(
                platform.store.rows,
                "SELECT table, sum(bytes_on_disk), sum(rows) FROM system.parts "
                "WHERE database = 'k2' AND active GROUP BY table",
            )
            silver = {t: (b, r) for t, b, r in parts}.get("silver_trades", (0, 0))[1]
            result["bytes_per_trade"] = {t: b / silver for t, b, _ in sorted(parts) if silver and b}
        if scraper is not None:
            scraper.cancel()
            result["scrapes"] = scrapes
        stop.set()
        await task

    try:
        asyncio.run(main())
    finally:
        stop_process(sim)
    if latency:
        result["p50_ms"], result["p99_ms"] = pct(latencies, 0.5), pct(latencies, 0.99)
    result["rss_peak_mb"] = peak_rss_mb()
    return result


def query_phase(trades: int, runs: int) -> dict[str, object]:
    """Store `trades` synthetic trades over the last 6 days, then time the candle query."""
    from k2.hotstore import migrate
    from k2.hotstore.clickhouse import ClickHouseStore
    from k2.instruments import load_instruments
    from k2.query import candle_tiers, frames, tiers
    from k2.settings import HotStoreSettings

    data = scratch_dir("k2-bench-q-")
    store = ClickHouseStore.at(data / "hot")
    migrate.apply(store, HotStoreSettings())
    symbols = load_instruments()["binance"]
    span_ns = 6 * 86400 * 10**9
    start_ns = time.time_ns() - span_ns
    load_s = load_synthetic(store, trades, symbols, start_ns, span_ns)
    stored = store.rows("SELECT count() FROM k2.silver_trades")[0][0]
    # One untimed query per symbol first: the first read of a table in a process loads its marks
    # and primary index (~50 ms once); a dashboard asks the same query again and again.
    for symbol in symbols:
        candle_tiers.candles(store, None, "1m", tiers.Filter("binance", f"{symbol[:-4]}/USDT"), 100)
    timings = []
    for i in range(runs):
        symbol = f"{symbols[i % len(symbols)][:-4]}/USDT"
        t0 = time.perf_counter_ns()
        rows = frames.rows(
            candle_tiers.candles(store, None, "1m", tiers.Filter("binance", symbol), 100)
        )
        timings.append(time.perf_counter_ns() - t0)
        assert len(rows) == 100, len(rows)
    store.close()
    return {
        "stored": stored,
        "load_s": load_s,
        "p50_ms": pct(timings, 0.5),
        "p99_ms": pct(timings, 0.99),
        "rss_peak_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=15.0, help="measurement window per pipeline phase"
    )
    parser.add_argument("--metrics", choices=["on", "off", "both"], default="on")
    parser.add_argument(
        "--rounds", type=int, default=1, help="throughput runs per metrics mode (median reported)"
    )
    parser.add_argument(
        "--trades", type=int, default=10_000_000, help="trades stored for the query phase"
    )
    parser.add_argument(
        "--offload",
        action="store_true",
        help="also measure peak RSS with an offload cycle inside a firehose phase",
    )
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, *rest = args.phase
        if kind == "query":
            result = query_phase(int(rest[0]), 300)
        else:
            rate, tick, metrics, seconds, kind = (
                float(rest[0]),
                float(rest[1]),
                rest[2] == "on",
                float(rest[3]),
                rest[4],
            )
            result = pipeline_phase(
                rate, tick, 5, seconds, metrics, kind == "latency", kind == "offload"
            )
        print(json.dumps(result))
        return
    from k2.instruments import load_instruments

    symbols = sum(len(v) for v in load_instruments().values())
    modes = ["on", "off"] if args.metrics == "both" else [args.metrics]
    print(
        f"machine: {os.cpu_count()} cores; {symbols} instruments; simulator in its own process; "
        f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)"
    )
    fires: dict[str, list[dict[str, object]]] = {m: [] for m in modes}
    # interleaved (on, off, off, on, ...): drift on a noisy machine hits both
    for i in range(args.rounds):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            fire = run_phase(
                HERE, ["pipeline", FIREHOSE, "20", mode, str(args.seconds), "firehose"]
            )
            fires[mode].append(fire)
            print(
                f"[metrics {mode}] round {i + 1}: "
                f"{fire['silver_rows_per_s']:,.0f} trades/s committed "
                f"(backpressure {fire['backpressure_s']:.1f} s, "
                f"peak RSS {fire['rss_peak_mb']:.0f} MB)"
            )
    on_disk = fires[modes[0]][-1].get("bytes_per_trade")
    if isinstance(on_disk, dict):
        print(
            "hot store on disk, bytes per trade stored in silver (after the last firehose round, "
            "parts not merged yet included): "
            + ", ".join(f"{t} {b:.1f}" for t, b in on_disk.items())
        )
    throughput = {
        m: statistics.median(float(f["silver_rows_per_s"]) for f in fires[m]) for m in modes
    }  # type: ignore[arg-type]
    for mode in modes:
        print(
            f"[metrics {mode}] throughput: {throughput[mode]:,.0f} trades/s committed "
            f"(median of {args.rounds})"
        )
        steady = run_phase(
            HERE, ["pipeline", str(5000 / symbols), "1", mode, str(args.seconds), "latency"]
        )
        print(
            f"[metrics {mode}] latency at {steady['silver_rows_per_s']:,.0f} trades/s: "
            f"p50 {steady['p50_ms']:.1f} ms, p99 {steady['p99_ms']:.1f} ms "
            f"(peak RSS {steady['rss_peak_mb']:.0f} MB)"
        )
        stages = steady.get("stages")
        if isinstance(stages, dict):
            print(
                f"[metrics {mode}] by stage, p50 / p99 ms (k2_writer_stage_latency_seconds, "
                "interpolated in its buckets): "
                + "; ".join(f"{k} {v[0]:.1f} / {v[1]:.1f}" for k, v in stages.items())
            )
    if len(modes) == 2:
        loss = 1 - throughput["on"] / throughput["off"]
        print(
            f"metrics overhead: {loss * 100:.1f} % throughput "
            f"({throughput['on']:,.0f} on vs {throughput['off']:,.0f} off)"
        )
    if args.offload:
        fire = run_phase(HERE, ["pipeline", FIREHOSE, "20", modes[0], str(args.seconds), "offload"])
        print(
            f"firehose with an offload cycle ({fire.get('offloaded_rows', 0):,} rows archived): "
            f"{fire['silver_rows_per_s']:,.0f} trades/s committed, "
            f"peak RSS {fire['rss_peak_mb']:.0f} MB"
        )
    q = run_phase(HERE, ["query", str(args.trades)])
    print(
        f"query 'last 100 1m candles of one symbol' with {q['stored']:,} trades stored: "
        f"p50 {q['p50_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms (loaded in {q['load_s']:.0f} s)"
    )
    print(f"ingest_throughput: {throughput[modes[0]]:.0f} trades/s")


if __name__ == "__main__":
    main()
