"""What one commit costs in the hot store, and which views the cost comes from.

The writer commits a batch as one insert into `k2.ingest_trades`, whose materialized views write
the venue's bronze table, silver and the six candle tables. On a scratch chDB store this times
inserts of `--rows` trades (as the writer sends them at 5,000 trades/s every 100 ms), first with
every view, then with views detached one group at a time: the five candle rollups (5m to 1d), the
1m candles, the bronze tables. What is left is silver alone.

Usage: python bench/commit.py [--rows N] [--inserts N]
Last line: `commit_insert_p50_ms: <ms>` (every view attached, as K2 runs)
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from _common import cpu_reference, scratch_dir  # bench/_common.py

ROLLUPS = ("5m", "15m", "30m", "1h", "1d")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500, help="trades per insert")
    parser.add_argument("--inserts", type=int, default=40, help="inserts per setup")
    args = parser.parse_args()

    from k2.exchanges import VENUE_NAMES
    from k2.hotstore import migrate
    from k2.hotstore.batch import insert_settings
    from k2.hotstore.clickhouse import ClickHouseStore
    from k2.hotstore.schema import INGEST_TABLE
    from k2.settings import HotStoreSettings

    print(f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)")
    store = ClickHouseStore.at(scratch_dir("k2-bench-commit-") / "hot")
    migrate.apply(store, HotStoreSettings())
    first_id = 0

    def timed(label: str) -> float:
        nonlocal first_id
        seconds = []
        for _ in range(args.inserts):
            settings = insert_settings(INGEST_TABLE, args.rows, uuid.uuid4().hex)
            started = time.perf_counter()
            store.execute(
                f"INSERT INTO k2.{INGEST_TABLE} "
                f"SELECT 'binance', 'BTCUSDT', 'BTC/USDT', {first_id} + number, "
                "toDecimal128('60000.1', 18), toDecimal128('0.01', 18), 'true', true, now64(9), "
                f"now64(9), 'bench', 'ws', false, '{{}}', {first_id} + number + 1, 'bench' "
                f"FROM numbers({args.rows})",
                settings=settings,
            )
            seconds.append(time.perf_counter() - started)
            first_id += args.rows
        seconds.sort()
        p50 = statistics.median(seconds) * 1000
        p90 = seconds[int(len(seconds) * 0.9)] * 1000
        print(f"{label:44} p50 {p50:6.1f} ms   p90 {p90:6.1f} ms", flush=True)
        return p50

    print(f"{args.inserts} inserts of {args.rows} trades each:")
    every = timed("every view (bronze, silver, six candles)")
    for tf in ROLLUPS:
        store.execute(f"DROP VIEW k2.ohlcv_{tf}_mv")
    timed("without the five candle rollups")
    store.execute("DROP VIEW k2.ohlcv_1m_mv")
    timed("without any candle view")
    for venue in VENUE_NAMES:
        store.execute(f"DROP VIEW k2.bronze_from_ingest_{venue}")
    timed("silver alone")
    store.close()
    print(f"commit_insert_p50_ms: {every:.1f}")


if __name__ == "__main__":
    main()
