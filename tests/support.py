"""Run feeds against the simulator and compare what they emitted with its ground truth."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from k2.ingest.feed import Feed
from k2.ingest.runner import build_feeds, http_client, run_feeds
from k2.ingest.stats import LIVE
from k2.instruments import Instruments
from k2.records import Gap, Reject, Source, Trade
from k2.settings import Settings, load_settings
from k2.simulator import Faults, Simulator

SMALL: Instruments = {
    "binance": ("BTCUSDT", "ETHUSDT"),
    "kraken": ("BTC/USD", "ETH/USD"),
    "coinbase": ("BTC-USD", "ETH-USD"),
}


@dataclass
class CollectingSink:
    received: list[tuple[Trade, str, Source]] = field(default_factory=list)
    accepted: list[Trade] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)

    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str, source: Source
    ) -> None:
        self.received.extend((t, conn_id, source) for t in received)
        self.accepted.extend(accepted)

    async def gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    async def reject(self, reject: Reject) -> None:
        self.rejects.append(reject)


async def wait_until(
    check: Callable[[], bool],
    timeout: float,  # noqa: ASYNC109 - the error names the timeout; used by many tests
    what: str,
    step: float = 0.1,
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(step)


def fast_ingest(**extra: Any) -> dict[str, Any]:
    """Ingest settings that keep tests quick: short backoff, short grace."""
    return {
        "backoff_initial_s": 0.2,
        "backoff_max_s": 1.5,
        "gap_grace_s": 0.2,
        "ping_interval_s": 5.0,
    } | extra


@dataclass
class Capture:
    sim: Simulator
    feeds: list[Feed]
    sink: Any
    settings: Settings


async def capture(
    instruments: Instruments,
    faults: Faults,
    *,
    seed: int = 11,
    rate: float = 20.0,
    fault_seconds: float = 6.0,
    sink: Any = None,
    venue_overrides: dict[str, dict[str, Any]] | None = None,
    ingest: dict[str, Any] | None = None,
    during: Callable[[Capture], Awaitable[None]] | None = None,
) -> Capture:
    """Run feeds against a fresh simulator through `fault_seconds` of faults, then a clean tail.

    The simulator starts paused, so every trade it generates is one the feeds could have seen:
    the ground truth is its whole history.
    """
    sim = Simulator(instruments, seed=seed, trades_per_second=rate, faults=faults, tick_s=0.02)
    sim.paused = True
    await sim.start()
    venues = sim.venue_settings()
    for venue, extra in (venue_overrides or {}).items():
        venues[venue] = venues.get(venue, {}) | extra
    settings = load_settings(venues=venues, ingest=fast_ingest(**(ingest or {})))
    sink = sink if sink is not None else CollectingSink()
    stop = asyncio.Event()
    async with http_client() as http:
        feeds = build_feeds(settings, instruments, sink, http)
        task = asyncio.create_task(run_feeds(feeds, stop))
        try:
            await wait_until(
                lambda: all(f.stats.state == LIVE for f in feeds), 20, "feeds to connect"
            )
            await asyncio.sleep(0.3)  # let subscriptions settle before the market opens
            faults.active_until = time.monotonic() + fault_seconds
            sim.paused = False
            cap = Capture(sim, feeds, sink, settings)
            if during is not None:
                await during(cap)
            await asyncio.sleep(max(0.0, faults.active_until - time.monotonic()))
            clean_from = time.time_ns() + 200_000_000
            await wait_until(
                lambda: all(
                    s.last_trade_event_ns > clean_from
                    for f in feeds
                    for s in f.stats.symbols.values()
                ),
                60,
                "every symbol to trade again after the faults",
            )
            sim.paused = True
            await drain(feeds)
        finally:
            stop.set()
            await task
    await sim.stop()
    return Capture(sim, feeds, sink, settings)


async def drain(feeds: Sequence[Feed], quiet_s: float = 1.0, timeout: float = 120) -> None:  # noqa: ASYNC109 - passed on to wait_until
    """Wait until no feed has a gap repair queued or running for `quiet_s`."""
    quiet_since: float | None = None

    def settled() -> bool:
        nonlocal quiet_since
        if any(f.repairer.pending() for f in feeds):
            quiet_since = None
            return False
        quiet_since = quiet_since or time.monotonic()
        return time.monotonic() - quiet_since >= quiet_s

    await wait_until(settled, timeout, "gap repairs to finish")


def truth_by_key(sim: Simulator) -> dict[tuple[str, str, int], tuple[Decimal, Decimal, str, int]]:
    out = {}
    for venue, market, t in sim.truth():
        out[(venue, market.symbol, t.trade_id)] = (
            Decimal(t.price_text),
            Decimal(t.amount_text),
            "buy" if t.taker_buy else "sell",
            t.ts_ns,
        )
    return out


def assert_exact(sim: Simulator, trades: Sequence[Trade]) -> int:
    """Assert `trades` equal the simulator's ground truth exactly; return how many there were."""
    truth = truth_by_key(sim)
    seen: dict[tuple[str, str, int], Trade] = {}
    dupes = []
    for t in trades:
        key = (t.exchange, t.symbol, t.trade_id)
        if key in seen:
            dupes.append(key)
        seen[key] = t
    assert not dupes, f"{len(dupes)} duplicate trades emitted, e.g. {dupes[:3]}"
    missing = sorted(set(truth) - set(seen))
    extra = sorted(set(seen) - set(truth))
    per_symbol: dict[tuple[str, str], int] = defaultdict(int)
    for key in missing:
        per_symbol[key[:2]] += 1
    assert not missing, f"{len(missing)} trades missing: {dict(per_symbol)}; first {missing[:3]}"
    assert not extra, f"{len(extra)} trades the venue never made: {extra[:3]}"
    wrong = [
        (k, (t.price, t.amount, t.taker_side, t.ts_event), truth[k])
        for k, t in seen.items()
        if (t.price, t.amount, t.taker_side, t.ts_event) != truth[k]
    ]
    assert not wrong, f"{len(wrong)} trades differ from the venue's, e.g. {wrong[:2]}"
    return len(seen)


K2 = [sys.executable, "-m", "k2"]


def k2(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    return subprocess.run(
        [*K2, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
    )


def exit_code(process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> int:
    """`process`'s exit code once it stops; if it does not stop in time, fail with every thread's
    stack (k2 prints them on SIGUSR1) and the end of its log."""
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
        process.kill()
        process.wait(10)
        pytest.fail(f"{log.name} did not stop in {timeout_s:.0f} s:\n{log.read_text()[-12_000:]}")


def wait_for_line(path: Path, text: str, timeout: float) -> None:
    """Wait until the log at `path` has a line containing `text`."""
    until(lambda: path.exists() and text in path.read_text(), timeout, f"{text!r} in {path.name}")


def until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    why: Callable[[], object] | None = None,
) -> None:
    """Poll `ready` until it holds; after `timeout` seconds fail, naming `what` and what `why`
    says (the missing keys, say)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() >= deadline:
            detail = f": {why()!r:.2000}" if why is not None else ""
            raise AssertionError(f"waited {timeout:.0f} s for {what}{detail}")
        time.sleep(0.25)
