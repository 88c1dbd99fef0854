"""Fuzz K2's capture path through to a real store: mutated frames -> adapter -> writer -> chDB.

Used by the test suite (100,000 frames per venue) and by bench/fuzz.py (as many as asked). The
verdict: no frame crashes the adapter, the writer neither stalls nor is refused, and every frame
is either stored exactly (its trades, value for value, in bronze) or a reject with a reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from k2.errors import ParseError
from k2.exchanges import make_adapter
from k2.exchanges.base import as_parsed
from k2.hotstore.store import HotStore
from k2.hotstore.writer import StoreWriter
from k2.instruments import load_instruments
from k2.records import Reject, Source, Trade
from k2.settings import WriterSettings
from k2.simulator.frames import wire_frames
from k2.simulator.mutate import Mutator
from k2.simulator.simulator import SERVERS

# Every simulated venue, on the first two symbols the packaged instruments file lists for it; a
# venue that batches trades sends a few per frame.
SYMBOLS = {v: symbols[:2] for v, symbols in load_instruments().items() if v in SERVERS}
PER_MESSAGE = {v: 3 if SERVERS[v].batching else 1 for v in SYMBOLS}


@dataclass
class FuzzResult:
    venue: str
    frames: int = 0
    with_trades: int = 0  # frames that yielded trades (some may also have had trades rejected)
    partly_rejected: int = 0
    rejected: int = 0  # frames rejected whole
    signals: int = 0  # acks and heartbeats: nothing to store, nothing wrong
    trades: int = 0
    rejects: int = 0  # reject records (a frame may hold several rejected trades)
    # (frame, error) outside ParseError
    crashes: list[tuple[bytes, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what the store check found
    parse_s: float = 0.0
    write_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.crashes and not self.problems

    def line(self) -> str:
        return (
            f"{self.venue}: {self.frames:,} frames, {self.with_trades:,} with trades "
            f"({self.trades:,} trades; "
            f"{self.partly_rejected:,} of them with some trades rejected), "
            f"{self.rejected:,} rejected whole, {self.signals:,} signals; "
            f"{self.rejects:,} rejects; {len(self.crashes)} crashes; "
            f"{len(self.problems)} store problems"
        )


def seed_frames(venue: str, samples: Path | None = None) -> list[bytes]:
    """Real frames to mutate: the simulator's (an hour ago), then any documented samples."""
    frames = wire_frames(
        venue,
        SYMBOLS[venue],
        400,
        PER_MESSAGE[venue],
        seed=3,
        start_ns=time.time_ns() - 3600 * 10**9,
    )
    if samples is not None:
        frames += [p.read_bytes() for p in sorted(samples.glob(f"{venue}-*.json"))]
    return frames


def fuzz(
    store: HotStore, venue: str, frames: int, seed: int, samples: Path | None = None
) -> FuzzResult:
    """Run `frames` mutated frames of `venue` through its adapter and the writer into `store`
    (whose bronze and rejects tables should start empty), and check what was stored."""
    result = FuzzResult(venue, frames)
    adapter = make_adapter(venue)
    adapter.expect(SYMBOLS[venue])
    now = time.time_ns()
    trades: list[Trade] = []
    rejects: list[Reject] = []
    started = time.perf_counter()
    for raw in Mutator(seed_frames(venue, samples), seed).take(frames):
        try:
            parsed = as_parsed(adapter.parse(raw, now))
        except ParseError as err:
            rejects.append(Reject(venue, err.reason, raw, now, "fuzz"))
            result.rejected += 1
            continue
        except Exception as err:  # noqa: BLE001 - a crash is what fuzzing exists to find
            result.crashes.append((raw[:300], repr(err)))
            continue
        trades.extend(parsed.trades)
        rejects.extend(Reject(venue, e.reason, raw, now, "fuzz") for e in parsed.rejected)
        result.with_trades += bool(parsed.trades)
        result.signals += not parsed.trades and not parsed.rejected
        result.partly_rejected += bool(parsed.trades and parsed.rejected)
    result.parse_s = time.perf_counter() - started
    result.trades, result.rejects = len(trades), len(rejects)
    started = time.perf_counter()
    writer = asyncio.run(asyncio.wait_for(_write(store, venue, trades, rejects), 300))
    result.write_s = time.perf_counter() - started
    s = writer.stats
    if s.refused_rows or s.unwritten_rows or s.dropped_records or writer.buffered():
        result.problems.append(
            f"writer: {s.refused_rows} refused, {s.unwritten_rows} unwritten, "
            f"{s.dropped_records} dropped"
        )
    stored = store.rows(
        f"SELECT symbol, trade_id, toString(price), toString(amount), toString(taker_side), "
        f"toUnixTimestamp64Nano(ts_event), raw FROM k2.bronze_trades_{venue}"
    )
    got = Counter(
        (s_, i, Decimal(p), Decimal(a), side, ts, raw) for s_, i, p, a, side, ts, raw in stored
    )
    want = Counter(
        (t.symbol, t.trade_id, t.price, t.amount, t.taker_side, t.ts_event, t.raw.decode())
        for t in trades
    )
    if got != want:
        result.problems.append(
            f"bronze differs from what the adapter emitted: {sum((want - got).values())} "
            f"missing, {sum((got - want).values())} unexpected, e.g. {list(want - got)[:2]}"
        )
    ((n_rejects, no_reason),) = store.rows("SELECT count(), countIf(reason = '') FROM k2.rejects")
    if n_rejects != len(rejects) or no_reason:
        result.problems.append(
            f"rejects: {n_rejects} stored of {len(rejects)}, {no_reason} without a reason"
        )
    return result


async def _write(
    store: HotStore, venue: str, trades: list[Trade], rejects: list[Reject]
) -> StoreWriter:
    writer = StoreWriter(store, WriterSettings(), 0)
    for i in range(0, len(trades), 2000):
        chunk = trades[i : i + 2000]
        await writer.trades(chunk, chunk, f"{venue}-fuzz", Source.WS)
        await writer.flush()
    for reject in rejects:
        await writer.reject(reject)
    await writer.close(deadline=time.monotonic() + 120)  # a stall would leave rows unwritten
    return writer
