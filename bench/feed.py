"""Simulator firehose -> feed sessions -> normalized records: throughput and latency end to end.

The simulator runs as its own process (`k2 simulate`, all three venues, the default 34
instruments); the feeds run in this process and deliver to a counting sink. Two phases:

1. throughput: the simulator offers 12,000 trades/s per instrument (408,000/s with the default 34),
   more than the feeds take; trades/s accepted. On two cores the simulator's share of the CPU
   counts too: offering more makes it slower, not the feeds.
2. latency: 5,000 trades/s in total; time from the simulator stamping a trade (the moment it
   generates and sends it, 1 ms clock tick) to the record reaching the sink, p50/p99.

Usage: python bench/feed.py [--seconds S]
Last line: `feed_throughput: <trades/s> trades/s`
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Sequence

from _common import cpu_reference, pct, start_simulator, venues_from_env  # bench/_common.py

from k2.ingest.runner import build_feeds, http_client, run_feeds
from k2.ingest.stats import LIVE
from k2.instruments import load_instruments
from k2.records import Gap, Reject, Trade
from k2.settings import load_settings

FIREHOSE = 12_000  # trades/s per instrument offered in the throughput phase (8,000 was all taken)


class Meter:
    def __init__(self) -> None:
        self.count = 0
        self.latencies: list[int] | None = None
        self.per_venue: dict[str, int] = {}

    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str
    ) -> None:
        self.count += len(accepted)
        if accepted:
            venue = accepted[0].exchange
            self.per_venue[venue] = self.per_venue.get(venue, 0) + len(accepted)
        if self.latencies is not None:
            now = time.time_ns()
            self.latencies.extend(now - t.ts_event for t in accepted)

    async def gap(self, gap: Gap) -> None:
        pass

    async def reject(self, reject: Reject) -> None:
        pass


async def run_phase(
    rate: float, tick_ms: float, warmup: float, seconds: float, latency: bool
) -> Meter:
    proc, env = start_simulator(rate, tick_ms)
    try:
        settings = load_settings(venues=venues_from_env(env), ingest={"check_listing": False})
        instruments = load_instruments()
        meter, stop = Meter(), asyncio.Event()
        async with http_client() as http:
            feeds = build_feeds(settings, instruments, meter, http)
            task = asyncio.create_task(run_feeds(feeds, stop))
            deadline = time.monotonic() + 20
            while not all(f.stats.state == LIVE for f in feeds) and time.monotonic() < deadline:  # noqa: ASYNC110 - feeds expose a state, not an event
                await asyncio.sleep(0.1)
            await asyncio.sleep(warmup)
            meter.count, meter.per_venue = 0, {}
            meter.latencies = [] if latency else None
            start = time.monotonic()
            await asyncio.sleep(seconds)
            elapsed = time.monotonic() - start
            count, per_venue = meter.count, dict(meter.per_venue)
            lat = meter.latencies
            meter.latencies = None
            stop.set()
            await task
        meter.count = int(count / elapsed)
        meter.per_venue = {v: int(n / elapsed) for v, n in per_venue.items()}
        meter.latencies = lat
        return meter
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement window per phase")
    args = parser.parse_args()
    symbols = sum(len(v) for v in load_instruments().values())
    print(
        f"machine: {os.cpu_count()} cores; {symbols} instruments; simulator in its own process; "
        f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)"
    )
    fire = asyncio.run(
        run_phase(rate=FIREHOSE, tick_ms=20, warmup=3, seconds=args.seconds, latency=False)
    )
    print(
        f"throughput: {fire.count:,} trades/s accepted of {FIREHOSE * symbols:,} offered "
        f"({', '.join(f'{v} {n:,}/s' for v, n in fire.per_venue.items())})"
    )
    steady = asyncio.run(
        run_phase(rate=5000 / symbols, tick_ms=1, warmup=2, seconds=args.seconds, latency=True)
    )
    lat = steady.latencies or [0]
    print(
        f"latency at {steady.count:,} trades/s: p50 {pct(lat, 0.5):.2f} ms, "
        f"p99 {pct(lat, 0.99):.2f} ms, max {max(lat) / 1e6:.2f} ms ({len(lat):,} trades)"
    )
    print(f"feed_throughput: {fire.count} trades/s")


if __name__ == "__main__":
    main()
