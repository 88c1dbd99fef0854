"""Offload throughput and the steady-state 15-minute cycle, on this machine.

1. throughput: 5 million silver rows in the hot store (written through the ingest table, as the
   writer does), offloaded to an empty archive: rows/s (default 1 M-row chunks, one commit each).
2. cycle: an archive that is current, then 15 minutes of trades at 100 trades/s over the 34
   default instruments; the offload flow for all ten tables, run under Prefect (a temporary
   server, as `k2 up` uses), timed from start to finish; and the same work without Prefect.

The system this replaces reached 236,000 rows/s with Spark and took about 94 s per cycle.

Usage: python bench/offload.py [--rows N]
Last line: `offload_throughput: <rows/s> rows/s`
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from _common import cpu_reference, scratch_dir  # bench/_common.py

from k2.archive.lake import Lake
from k2.archive.offload import offload_table
from k2.archive.tables import BY_NAME, TABLES
from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.instruments import load_instruments
from k2.settings import HotStoreSettings, load_settings


def insert_trades(
    store: ClickHouseStore, n: int, start_ns: int, span_ns: int, first_seq: int
) -> int:
    """Write `n` synthetic trades over the default instruments, spread over `span_ns`."""
    pairs = [(v, s) for v, symbols in load_instruments().items() for s in symbols]
    venues = "[" + ",".join(f"'{v}'" for v, _ in pairs) + "]"
    symbols = "[" + ",".join(f"'{s}'" for _, s in pairs) + "]"
    k = len(pairs)
    store.execute(f"""
        INSERT INTO k2.ingest_trades
        SELECT {venues}[number % {k} + 1], {symbols}[number % {k} + 1],
               'X/' || toString(number % {k}), {first_seq} + number,
               toDecimal128(toString(100 + (number % 997) / 100), 18), toDecimal128('0.25', 18),
               'true', number % 2 = 0,
               fromUnixTimestamp64Nano(
                   toInt64({start_ns} + number * {span_ns // max(n, 1)}), 'UTC'
               ),
               now64(9), 'bench', 'ws', false, '{{"bench":true}}', {first_seq} + number
        FROM numbers({n})""")
    return first_seq + n


def throughput(rows: int) -> float:
    data = scratch_dir("k2-offload-")
    store = ClickHouseStore.at(data / "hot")
    migrate.apply(store, HotStoreSettings())
    settings = load_settings(data_dir=data)
    insert_trades(store, rows, time.time_ns() - 86_400 * 10**9, 86_400 * 10**9, 1)
    lake = Lake(settings.archive, data)
    spec = BY_NAME["silver_trades"]
    lake.table(spec)  # created before timing
    started = time.perf_counter()
    result = offload_table(
        store, lake, spec, chunk_rows=settings.archive.chunk_rows, lookback_minutes=180
    )
    elapsed = time.perf_counter() - started
    assert result.rows == rows, result
    print(
        f"throughput: {rows:,} silver rows in {elapsed:.2f} s = {rows / elapsed:,.0f} rows/s "
        f"({result.commits} commits of up to {settings.archive.chunk_rows:,} rows)"
    )
    lake.close()
    store.close()
    return rows / elapsed


def cycle() -> tuple[float, float]:
    from prefect.testing.utilities import prefect_test_harness

    from k2.flows.offload import offload_flow
    from k2.flows.runtime import ArchiveRuntime, using

    data = scratch_dir("k2-cycle-")
    store = ClickHouseStore.at(data / "hot")
    migrate.apply(store, HotStoreSettings())
    settings = load_settings(data_dir=data)
    lake = Lake(settings.archive, data)
    quarter = 900 * 10**9
    now = time.time_ns()
    seq = insert_trades(store, 90_000, now - 3 * quarter, quarter, 1)  # history: already archived
    for spec in TABLES:
        offload_table(store, lake, spec, chunk_rows=1_000_000, lookback_minutes=180)
    insert_trades(store, 90_000, now - quarter, quarter, seq)  # the last 15 minutes: 100 trades/s
    with (
        prefect_test_harness(server_startup_timeout=120),
        using(ArchiveRuntime(store, lake, settings)),
    ):
        offload_flow(["ohlcv_1d"])  # warm the temporary server and the flow engine
        started = time.perf_counter()
        results = offload_flow()
        with_prefect = time.perf_counter() - started
    rows = sum(r["rows"] for r in results.values())
    insert_trades(store, 90_000, now - quarter // 2, quarter // 2, seq + 90_000)
    started = time.perf_counter()
    for spec in TABLES:
        offload_table(store, lake, spec, chunk_rows=1_000_000, lookback_minutes=180)
    bare = time.perf_counter() - started
    print(
        f"cycle: 15 minutes at 100 trades/s ({rows:,} rows over ten tables) "
        f"in {with_prefect:.2f} s as a Prefect flow run; "
        f"{bare:.2f} s for the same work without Prefect"
    )
    lake.close()
    store.close()
    return with_prefect, bare


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rows", type=int, default=5_000_000, help="silver rows for the throughput run"
    )
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores; "
        f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)"
    )
    rate = throughput(args.rows)
    cycle()
    print(f"offload_throughput: {rate:.0f} rows/s")


if __name__ == "__main__":
    main()
