"""Fuzz the capture path through to chDB with many mutated frames per venue (the test suite runs
100,000 each): adapter, writer, store; then check every frame was stored exactly or rejected.

Usage: python bench/fuzz.py [--frames N] [--seed S]
Last line: `fuzz_crashes: <n>` (frames that crashed, or store problems, over all venues)
"""

from __future__ import annotations

import argparse

from _common import scratch_dir  # bench/_common.py

from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.settings import HotStoreSettings
from k2.simulator.fuzz import SYMBOLS, fuzz


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=1_000_000, help="mutated frames per venue")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    bad = 0
    for venue in SYMBOLS:
        store = ClickHouseStore.at(scratch_dir(f"k2-fuzz-{venue}-") / "hot")
        try:
            migrate.apply(store, HotStoreSettings(bronze_ttl_days=20_000, silver_ttl_days=20_000))
            result = fuzz(store, venue, args.frames, args.seed)
        finally:
            store.close()
        print(result.line())
        print(
            f"  {args.frames / result.parse_s:,.0f} frames/s parsed, "
            f"{result.trades / result.write_s:,.0f} trades/s written and checked"
        )
        for frame, error in result.crashes[:5]:
            print(f"  crash: {error} on {frame[:120]!r}")
        for problem in result.problems:
            print(f"  store: {problem}")
        bad += len(result.crashes) + len(result.problems)
    print(f"fuzz_crashes: {bad}")


if __name__ == "__main__":
    main()
