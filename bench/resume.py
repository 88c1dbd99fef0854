"""What a restart costs with a full hot store: the resume state, and the time to first capture.

A data directory is filled with `--trades` synthetic trades (default 10 million) over the
default instruments of Binance and Coinbase (Coinbase's ids may skip, so its resume state includes
each symbol's window of recent ids), and `--gaps` pending gap records spread over the symbols (each
read back as the ids of its range silver still lacks), and marked as a clean stop leaves it. Then,
in fresh processes (each round fills a directory of its own):

1. `load_resume` alone, on the opened store;
2. a whole restart: the `k2 up` pipeline against a simulator, from opening the store to the first
   trade committed in silver ("first capture").

Usage: python bench/resume.py [--trades N] [--gaps G] [--rounds R]
Last line: `resume_first_capture_s: <s>` (the median over the rounds)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

from _common import (
    cpu_reference,
    run_phase,
    scratch_dir,
    start_simulator,
    stop_process,
    venues_from_env,
)

HERE = Path(__file__).resolve()
TARGET_S = 5.0


def fill(data: Path, trades: int, gaps: int) -> dict[str, object]:
    """Store `trades` trades (a fifth of them Coinbase's) and `gaps` pending gaps in `data`."""
    from k2.exchanges import make_adapter
    from k2.hotstore import migrate, recovery
    from k2.hotstore.clickhouse import ClickHouseStore
    from k2.instruments import load_instruments
    from k2.settings import HotStoreSettings

    instruments = load_instruments()
    began = time.monotonic()
    store = ClickHouseStore.at(data / "hot")
    migrate.apply(store, HotStoreSettings())
    try:
        now = time.time_ns()
        span = 3 * 86_400 * 10**9  # the last three days
        per_venue = {"binance": trades - trades // 5, "coinbase": trades // 5}
        for venue, count in per_venue.items():
            symbols = list(instruments[venue])
            canonical = [make_adapter(venue).canonical(s) for s in symbols]
            n = len(symbols)
            names = "[" + ",".join(f"'{s}'" for s in symbols) + "]"
            canon = "[" + ",".join(f"'{c}'" for c in canonical) + "]"
            store.execute(
                f"""
                INSERT INTO k2.ingest_trades
                SELECT '{venue}', {names}[number % {n} + 1], {canon}[number % {n} + 1],
                       intDiv(number, {n}) + 1,
                       toDecimal128(6000000 + number % 1000, 18) / 100, toDecimal128('0.01', 18),
                       'SELL', number % 2 = 0,
                       fromUnixTimestamp64Nano(toInt64({now - span} + number * {span // count})),
                       fromUnixTimestamp64Nano(toInt64({now - span} + number * {span // count})),
                       'bench', 'ws', false, '', number + 1, 'bench'
                FROM numbers({count})"""
            )
        # pending gaps: holes of 100 ids each, spread over the symbols and their history
        rows = []
        binance = list(instruments["binance"])
        top = per_venue["binance"] // len(binance)
        for g in range(gaps):
            symbol = binance[g % len(binance)]
            first = 1 + (g * 7919) % max(top - 200, 1)
            rows.append(
                f"('{uuid.uuid4()}', 'binance', '{symbol}', 'ids', {first}, {first + 99}, "
                f"fromUnixTimestamp64Nano(toInt64({now - span})), "
                f"fromUnixTimestamp64Nano(toInt64({now})), now64(9), 'pending', 100, 0, '')"
            )
        if rows:
            store.execute(
                "INSERT INTO k2.feed_gaps (gap_id, exchange, symbol, kind, first_id, last_id, "
                "ts_from, ts_to, detected_at, outcome, missing, recovered, detail) VALUES "
                + ",".join(rows)
            )
        while store.rows("SELECT count() FROM system.merges")[0][0]:
            time.sleep(0.5)
        stored = store.rows("SELECT count() FROM k2.silver_trades")[0][0]
    finally:
        store.close()
    recovery.mark_clean(data / "hot")  # as `k2 up` leaves it after a clean stop
    return {"stored": stored, "gaps": gaps, "seconds": time.monotonic() - began}


def resume_only(data: Path) -> dict[str, object]:
    from k2.hotstore.clickhouse import ClickHouseStore
    from k2.hotstore.resume import load_resume
    from k2.settings import IngestSettings

    began = time.monotonic()
    store = ClickHouseStore.at(data / "hot")
    opened = time.monotonic()
    try:
        state = load_resume(store, IngestSettings().recent_ids)
    finally:
        store.close()
    return {
        "open_s": opened - began,
        "resume_s": time.monotonic() - opened,
        "cursors": sum(len(v) for v in state.cursors.values()),
        "pending": sum(len(v) for v in state.pending.values()),
    }


def restart(data: Path) -> dict[str, object]:
    """`k2 up`'s pipeline on `data` against a simulator: seconds until the first trade commits."""
    from k2.embedded import Embedded
    from k2.instruments import load_instruments
    from k2.settings import load_settings

    sim, env = start_simulator(50, 100)
    settings = load_settings(
        data_dir=data,
        venues=venues_from_env(env),
        api={"port": 0},
        archive={"schedule_enabled": False},
    )
    platform = Embedded(settings, load_instruments())
    result: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        began = time.monotonic()
        task = asyncio.create_task(platform.run(stop))
        while platform.writer is None:  # noqa: ASYNC110 - the platform exposes a state
            await asyncio.sleep(0.01)
        result["resumed_s"] = time.monotonic() - began  # store open, resume state loaded
        while platform.writer.stats.rows.get("silver_trades", 0) == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        result["first_capture_s"] = time.monotonic() - began
        stop.set()
        await task

    try:
        asyncio.run(main())
    finally:
        stop_process(sim)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--gaps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        kind, where, *rest = args.phase
        data = Path(where)
        if kind == "fill":
            result = fill(data, int(rest[0]), int(rest[1]))
        elif kind == "resume":
            result = resume_only(data)
        else:
            result = restart(data)
        print(json.dumps(result))
        return
    print(f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)")
    firsts = []
    for i in range(args.rounds):
        # Each round fills a directory of its own: a fresh simulator numbers its trades from the
        # same ids as the last one, which would make a round's first trades duplicates of the round
        # before (and a copied chDB directory does not open).
        data = scratch_dir("k2-bench-resume-")
        filled = run_phase(HERE, ["fill", str(data), str(args.trades), str(args.gaps)])
        alone = run_phase(HERE, ["resume", str(data)])
        whole = run_phase(HERE, ["restart", str(data)])
        shutil.rmtree(data, ignore_errors=True)
        firsts.append(float(whole["first_capture_s"]))  # type: ignore[arg-type]
        print(
            f"round {i + 1}: stored {filled['stored']:,} trades and {filled['gaps']} pending gaps "
            f"in {filled['seconds']:.0f} s; store opened in {alone['open_s']:.2f} s, resume state "
            f"({alone['cursors']} cursors, {alone['pending']} pending gaps) in "
            f"{alone['resume_s']:.2f} s; restart: resumed at {whole['resumed_s']:.2f} s, "
            f"first capture at {whole['first_capture_s']:.2f} s",
            flush=True,
        )
    median = statistics.median(firsts)
    verdict = "met" if median < TARGET_S else "NOT met"
    print(f"target: first capture < {TARGET_S:.0f} s after a restart: {verdict}", file=sys.stderr)
    print(f"resume_first_capture_s: {median:.2f}")


if __name__ == "__main__":
    main()
