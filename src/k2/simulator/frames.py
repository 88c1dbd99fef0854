"""Venue frames without a socket: what the simulated venues would send, for benches and fuzzing."""

from __future__ import annotations

import time
from collections.abc import Sequence

from k2.simulator.faults import Faults
from k2.simulator.market import SymbolMarket
from k2.simulator.server import SimConnection
from k2.simulator.simulator import SERVERS


class _Offline(SimConnection):
    def __init__(self, params: dict[str, str]) -> None:  # no socket: the encoders only read params
        self.params, self.sequence = params, 0


def wire_frames(
    venue: str,
    symbols: Sequence[str],
    messages: int,
    per_message: int = 1,
    seed: int = 1,
    start_ns: int | None = None,
) -> list[bytes]:
    """`messages` trade messages of `per_message` trades each, round-robin over `symbols`, in the
    venue's wire format (Binance with µs times, as K2 subscribes), timed from `start_ns` (now)."""
    server_cls = SERVERS[venue]
    markets = {
        s: SymbolMarket(
            venue,
            s,
            server_cls.split(s)[0],
            seed,
            server_cls.first_id,
            server_cls.id_step_max,
            history=max(messages * per_message, 1000),
            text=server_cls.text,
        )
        for s in symbols
    }
    server = server_cls(markets, Faults(seed=seed), "127.0.0.1", 0)
    conn = _Offline({"timeUnit": "MICROSECOND"})
    now = time.time_ns() if start_ns is None else start_ns
    out = []
    for i in range(messages):
        market = markets[symbols[i % len(symbols)]]
        trades = market.generate(per_message, now + i * 1_000_000, now + (i + 1) * 1_000_000, False)
        out.append(server.encode(conn, market, trades))
    return out
