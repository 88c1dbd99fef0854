"""Parse + normalize throughput per venue on one core, against a plain json.loads baseline.

Messages come from the simulator's encoders (the venues' real wire formats): Binance one trade per
message, Kraken 2 and Coinbase 5 trades per message (typical of their batching). The baseline does
the same normalization with the standard library: json.loads, dict access, Decimal, side, ns time.

Usage: python bench/parse.py [--seconds S]
Last line: `parse_binance: <trades/s> trades/s`
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from decimal import Decimal

from _common import binance_baseline  # bench/_common.py

from k2.exchanges import make_adapter
from k2.exchanges.base import as_parsed
from k2.simulator.binance import BinanceSim
from k2.simulator.coinbase import CoinbaseSim
from k2.simulator.faults import Faults
from k2.simulator.kraken import KrakenSim
from k2.simulator.market import SymbolMarket
from k2.simulator.server import SimConnection
from k2.timeutil import rfc3339_to_ns

N_MESSAGES = 20_000
PER_MESSAGE = {"binance": 1, "kraken": 2, "coinbase": 5}


class _Conn(SimConnection):
    def __init__(self, params: dict[str, str]) -> None:  # no socket: encoders only read params
        self.params, self.sequence = params, 0


def messages(venue: str, micro: bool = True) -> list[bytes]:
    """The simulator's messages for one symbol of `venue`; Binance's times in µs, as K2 subscribes,
    or in ms (its streams' default) when not `micro`."""
    symbol = {"binance": "BTCUSDT", "kraken": "BTC/USD", "coinbase": "BTC-USD"}[venue]
    sim = {"binance": BinanceSim, "kraken": KrakenSim, "coinbase": CoinbaseSim}[venue]
    market = SymbolMarket(venue, symbol, "BTC", 1, 1_000_000, 1, history=10**7, text=sim.text)
    server = sim({symbol: market}, Faults(), "127.0.0.1", 0)
    conn = _Conn({"timeUnit": "MICROSECOND"} if micro else {})
    now = time.time_ns()
    k = PER_MESSAGE[venue]
    return [
        server.encode(conn, market, market.generate(k, now, now + 1_000_000, False))
        for _ in range(N_MESSAGES)
    ]


def baseline(venue: str) -> Callable[[bytes, int], list[dict]]:
    """The same normalization as plain Python: json.loads and dicts."""

    def kraken(raw: bytes, recv: int) -> list[dict]:
        msg = json.loads(raw, parse_float=Decimal, parse_int=Decimal)
        return [
            {
                "exchange": "kraken",
                "symbol": t["symbol"],
                "trade_id": int(t["trade_id"]),
                "price": t["price"],
                "amount": t["qty"],
                "taker_side": t["side"],
                "ts_event": rfc3339_to_ns(t["timestamp"]),
                "ts_recv": recv,
            }
            for t in msg["data"]
        ]

    def coinbase(raw: bytes, recv: int) -> list[dict]:
        msg = json.loads(raw)
        return [
            {
                "exchange": "coinbase",
                "symbol": t["product_id"],
                "trade_id": int(t["trade_id"]),
                "price": Decimal(t["price"]),
                "amount": Decimal(t["size"]),
                "taker_side": "buy" if t["side"] == "SELL" else "sell",
                "ts_event": rfc3339_to_ns(t["time"]),
                "ts_recv": recv,
            }
            for ev in msg["events"]
            for t in ev["trades"]
        ]

    return {"binance": binance_baseline, "kraken": kraken, "coinbase": coinbase}[venue]


def measure(
    fns: Sequence[Callable[[bytes, int], object]], msgs: list[bytes], seconds: float
) -> list[float]:
    """Return trades per second for each of `fns` over `msgs`: the best of passes taken in turn
    (one of each, again and again) for `seconds` in all, so a change in the VM's speed during the
    run reaches every function alike and their ratio holds."""
    counts = []
    recv = time.time_ns()  # the local clock: event times are checked against it
    for fn in fns:
        first = fn(msgs[0], recv)
        counts.append(len(first) if isinstance(first, list) else len(as_parsed(first).trades))  # type: ignore[arg-type]
    best = [0.0] * len(fns)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for raw in msgs:
                fn(raw, recv)
            best[i] = max(best[i], len(msgs) * counts[i] / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core
    results = {}
    print(
        f"{'venue':10} {'trades/msg':>10} {'k2 trades/s':>14} "
        f"{'baseline trades/s':>18} {'ratio':>7}"
    )
    for venue in ("binance", "kraken", "coinbase"):
        msgs = messages(venue)
        adapter = make_adapter(venue)
        ours, base = measure([adapter.parse, baseline(venue)], msgs, 2 * args.seconds)
        results[venue] = ours
        print(
            f"{venue:10} {PER_MESSAGE[venue]:>10} {ours:>14,.0f} "
            f"{base:>18,.0f} {ours / base:>6.2f}x"
        )
    print(f"parse_binance: {results['binance']:.0f} trades/s")


if __name__ == "__main__":
    main()
