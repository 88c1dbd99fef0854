"""Reads with 10 million trades stored, from the hot store and from the archive.

One data directory: 10,000,000 synthetic trades of Binance's 12 default symbols over the last 6
days, inserted through the ingest table (bronze, silver and all six candle tables follow), silver
offloaded to Iceberg (SQLite catalog, local disk), then:

1. last 100 1m candles of one symbol, hot: p50/p99 over 300 queries (after one untimed query per
   symbol: the first read of a table loads its marks);
2. one symbol-hour of trades: p50/p99 over 100 random symbol-hours, from hot (the tiers' read
   path) and from the archive (its Iceberg scan);
3. export of one whole day (every symbol), rows/s per format, from hot; then the same day once
   retention has emptied it in hot, so the archive serves it;
4. replay at max speed of that day to a null consumer, trades/s (Arrow batches, as the replay
   route and `k2 replay` have them before encoding; and encoded as JSON lines);
5. RSS growth while exporting all 10 million trades as Parquet to /dev/null;
6. the web page's first load on loopback in Debian's headless Chromium (skipped without it).

Usage: python bench/query.py [--trades N]
Last line: `query_candles_p99_ms: <ms>`
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import cpu_reference, load_synthetic, pct, peak_rss_mb, scratch_dir

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn()
        timings.append(time.perf_counter_ns() - t0)
    return pct(timings, 0.5), pct(timings, 0.99)


def drain(pieces: Iterator[object]) -> int:
    return sum(len(p) for p in pieces)  # type: ignore[arg-type]


def page_first_load(data: Path) -> tuple[float, str]:
    """Median of 3 first loads of / until the page says it is ready, in ms."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return float("nan"), "skipped: Debian's chromium is not installed (make tools)"
    import uvicorn
    from playwright.sync_api import sync_playwright

    from k2.api.app import create_app
    from k2.embedded import Embedded
    from k2.instruments import load_instruments
    from k2.settings import load_settings

    emb = Embedded(load_settings(None, data_dir=data), load_instruments())
    emb.open_store()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(emb), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    loads = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            for _ in range(3):
                page = browser.new_page()  # a new page each time: nothing cached
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                loads.append((time.perf_counter() - t0) * 1000)
                page.close()
            browser.close()
    finally:
        server.should_exit = True
        thread.join(10)
        if emb.lake is not None:
            emb.lake.close()
        if emb._owner is not None:
            emb._owner.close()
    return statistics.median(loads), ", ".join(f"{x:.0f}" for x in loads)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=10_000_000, help="trades stored")
    args = parser.parse_args()

    from k2.archive.lake import Lake
    from k2.archive.offload import offload_table
    from k2.archive.retention import expire_hot
    from k2.archive.tables import BY_NAME
    from k2.hotstore import migrate
    from k2.hotstore.clickhouse import ClickHouseStore
    from k2.instruments import load_instruments
    from k2.query import candle_tiers, frames, stream, tiers
    from k2.query.frames import TRADE_SCHEMA
    from k2.query.replay import runs
    from k2.settings import ArchiveSettings, HotStoreSettings

    # This VM's speed moves by up to 2x within minutes: compare runs whose references agree.
    print(f"cpu reference at the start {cpu_reference():,.0f} msg/s (bench/_common.py)")
    data = scratch_dir("k2-bench-query-")
    store = ClickHouseStore.at(data / "hot")
    migrate.apply(store, HotStoreSettings())
    symbols = load_instruments()["binance"]
    span_ns = 6 * DAY_NS
    start_ns = (time.time_ns() - span_ns) // HOUR_NS * HOUR_NS
    load_s = load_synthetic(store, args.trades, symbols, start_ns, span_ns)
    stored = store.rows("SELECT count() FROM k2.silver_trades")[0][0]
    print(f"stored {stored:,} trades of {len(symbols)} symbols over 6 days in {load_s:.1f} s")
    lake = Lake(ArchiveSettings(), data)
    t0 = time.monotonic()
    archived = offload_table(
        store, lake, BY_NAME["silver_trades"], chunk_rows=1_000_000, lookback_minutes=180
    ).rows
    print(f"offloaded silver: {archived:,} rows in {time.monotonic() - t0:.1f} s")

    # 1. candles
    markets = [f"{s[:-4]}/USDT" for s in symbols]
    for m in markets:
        candle_tiers.candles(store, None, "1m", tiers.Filter("binance", m), 100)
    picks = iter(random.Random(1).choices(markets, k=300))
    c50, c99 = timed(
        lambda: frames.rows(
            candle_tiers.candles(store, lake, "1m", tiers.Filter("binance", next(picks)), 100)
        ),
        300,
    )
    print(f"last 100 1m candles of one symbol (hot): p50 {c50:.1f} ms, p99 {c99:.1f} ms")

    # 2. one symbol-hour
    rng = random.Random(2)
    hours = [
        (rng.choice(markets), start_ns + rng.randrange(1, 6 * 24 - 1) * HOUR_NS) for _ in range(100)
    ]

    def hour_filter(i: int) -> tiers.Filter:
        market, at = hours[i % len(hours)]
        return tiers.Filter("binance", market, at, at + HOUR_NS)

    count = iter(range(10**9))
    h50, h99 = timed(
        lambda: frames.rows(tiers.trades_between(store, lake, hour_filter(next(count)))), 100
    )
    rows_per_hour = len(tiers.trades_between(store, lake, hour_filter(0)))
    count = iter(range(10**9))
    k50, k99 = timed(
        lambda: frames.rows(tiers.cold_trades(lake, hour_filter(next(count)), store)), 100
    )
    print(
        f"one symbol-hour of trades (~{rows_per_hour:,} rows, as rows of text): "
        f"hot p50 {h50:.1f} ms, p99 {h99:.1f} ms; archive p50 {k50:.1f} ms, p99 {k99:.1f} ms"
    )

    # 3. and 4. a whole day: export and replay, from hot, then from the archive
    day = (start_ns // DAY_NS + 2) * DAY_NS
    everything = tiers.Filter()

    def chunks() -> Iterator[stream.Chunk]:
        return stream.trade_chunks(store, lake, everything, day, day + DAY_NS)

    def day_figures(tier: str) -> dict[str, float]:
        out = {}
        for fmt in (stream.Format.arrow, stream.Format.parquet, stream.Format.csv):
            t0 = time.perf_counter()
            counter = [0]
            drain(stream.encode(counted(chunks(), counter), fmt, TRADE_SCHEMA))
            out[str(fmt)] = counter[0] / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        replayed = sum(len(r) for _, r in runs(chunks(), None))
        out["replay"] = replayed / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        encoder = stream.Encoder(stream.Format.jsonl, TRADE_SCHEMA)
        n = 0
        for _, r in runs(chunks(), None):
            encoder.write(r)
            n += len(r)
        out["replay_jsonl"] = n / (time.perf_counter() - t0)
        print(
            f"one day, every symbol ({replayed:,} trades), from {tier}: export "
            + ", ".join(f"{k} {v:,.0f} rows/s" for k, v in out.items() if not k.startswith("r"))
            + f"; replay at max speed {out['replay']:,.0f} trades/s "
            f"(JSON lines: {out['replay_jsonl']:,.0f}/s)"
        )
        return out

    hot_day = day_figures("hot")
    expired = expire_hot(
        store,
        lake,
        HotStoreSettings(bronze_ttl_days=1, silver_ttl_days=1),
        now=(day + 3 * DAY_NS) / 1e9,
        tables=["silver_trades"],
    )
    print(f"retention emptied silver days {', '.join(expired[0].dropped)} in hot")
    assert tiers.hot_count(store, tiers.Filter(start_ns=day, end_ns=day + DAY_NS)) == 0
    cold_day = day_figures("the archive")

    # 5. RSS while exporting everything: its peak after the first million rows and at the end
    # (bounded: the growth stops once a window or two are in flight)
    baseline = rss_mb()
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    counter = [0]
    early: list[float] = []

    def watched(chunks: Iterator[object]) -> Iterator[object]:
        for chunk in counted(chunks, counter):
            if not early and counter[0] >= 1_000_000:
                early.append(peak[0])
            yield chunk

    with open(os.devnull, "wb") as sink:
        every = stream.trade_chunks(store, lake, everything, start_ns, start_ns + 7 * DAY_NS)
        pieces = stream.encode(watched(every), stream.Format.parquet, TRADE_SCHEMA)
        written = stream.write_to(sink, pieces)
    took = time.perf_counter() - t0
    done.set()
    sampler.join()
    first = early[0] if early else peak[0]
    print(
        f"export of all {counter[0]:,} trades as Parquet ({written / 2**20:,.0f} MiB, "
        f"{counter[0] / took:,.0f} rows/s): RSS {baseline:,.0f} MB before; peak growth "
        f"+{first - baseline:,.0f} MB after 1 M rows, +{peak[0] - baseline:,.0f} MB after all; "
        f"process peak {peak_rss_mb():,.0f} MB"
    )
    lake.close()
    store.close()

    # 6. the page
    first, each = page_first_load(data)
    print(f"web page first load on loopback: median {first:.0f} ms ({each})")
    print(f"cpu reference at the end {cpu_reference():,.0f} msg/s")
    print(
        "targets: candles p99 <= 20 ms; symbol-hour p99 <= 50 ms (hot and archive); "
        "day export >= 2,000,000 rows/s (hot and archive); replay >= 1,000,000 trades/s; "
        "page < 1,000 ms"
    )
    print(
        f"summary: candles p99 {c99:.1f} ms; symbol-hour p99 hot {h99:.1f} / archive {k99:.1f} ms; "
        f"day export (arrow) hot {hot_day['arrow']:,.0f} / archive {cold_day['arrow']:,.0f} "
        "rows/s; "
        f"replay hot {hot_day['replay']:,.0f} / archive {cold_day['replay']:,.0f} trades/s; "
        f"page {first:.0f} ms"
    )
    print(f"query_candles_p99_ms: {c99:.1f}")


def counted(chunks: Iterator[object], counter: list[int]) -> Iterator[object]:
    """The chunks, counting their rows into counter[0]."""
    for chunk in chunks:
        counter[0] += len(chunk.rows)  # type: ignore[attr-defined]
        yield chunk


if __name__ == "__main__":
    main()
