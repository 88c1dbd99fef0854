"""Ground truth vs the hot store: silver rows and candles computed independently in Python."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from decimal import ROUND_DOWN, Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest

from k2.hotstore.schema import TIMEFRAMES
from k2.hotstore.store import HotStore
from k2.timeutil import rfc3339_to_ns

Key = tuple[str, str, int]  # exchange, venue symbol, trade id
Row = tuple[str, Decimal, Decimal, str, int]  # canonical, price, amount, taker side, ts_event ns
_Q18 = Decimal("1e-18")


def load_record(path: Path) -> dict[Key, Row]:
    out: dict[Key, Row] = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out[(r["exchange"], r["symbol"], r["trade_id"])] = (
            r["canonical_symbol"],
            Decimal(r["price"]),
            Decimal(r["amount"]),
            r["taker_side"],
            rfc3339_to_ns(r["ts_event"]),
        )
    return out


def read_silver(store: HotStore) -> dict[Key, Row]:
    rows = store.rows(
        "SELECT exchange, symbol, trade_id, canonical_symbol, toString(price), toString(amount), "
        "toString(taker_side), toUnixTimestamp64Nano(ts_event) FROM k2.silver_trades"
    )
    out: dict[Key, Row] = {}
    for exchange, symbol, trade_id, canonical, price, amount, side, ts in rows:
        key = (exchange, symbol, trade_id)
        assert key not in out, f"silver holds {key} twice"
        out[key] = (canonical, Decimal(price), Decimal(amount), side, ts)
    return out


def from_first_seen(truth: set[Key], seen: set[Key]) -> set[Key]:
    """The trades of `truth` from each symbol's lowest id in `seen` on (a client cannot know what
    traded before it first connected); a symbol with none seen keeps all of its trades."""
    first: dict[tuple[str, str], int] = {}
    for exchange, symbol, trade_id in seen:
        first[exchange, symbol] = min(first.get((exchange, symbol), trade_id), trade_id)
    return {k for k in truth if k[2] >= first.get(k[:2], k[2])}


def assert_silver_equals(
    silver: dict[Key, Row], truth: dict[Key, Row], from_first_stored: bool = False
) -> int:
    """Assert silver equals the ground truth; optionally only from the first trade stored per symbol
    (a client cannot know what traded before it first connected). A symbol with nothing stored
    misses all of its trades either way."""
    if from_first_stored:
        kept = from_first_seen(set(truth), set(silver))
        truth = {k: v for k, v in truth.items() if k in kept}
    missing = sorted(set(truth) - set(silver))
    extra = sorted(set(silver) - set(truth))
    assert not missing, f"{len(missing)} trades missing from silver, e.g. {missing[:3]}"
    assert not extra, f"{len(extra)} trades in silver the venue never made, e.g. {extra[:3]}"
    wrong = [k for k in truth if silver[k] != truth[k]]
    assert not wrong, (
        f"{len(wrong)} silver rows differ, e.g. {[(k, silver[k], truth[k]) for k in wrong[:2]]}"
    )
    return len(truth)


def expected_candles(
    trades: dict[Key, Row], seconds: int
) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Candles from trades: open/close by (event time, trade id), VWAP truncated to 18 places."""
    groups: dict[tuple[str, str, int], list[tuple[int, int, Decimal, Decimal, str]]] = defaultdict(
        list
    )
    for (exchange, _symbol, trade_id), (canonical, price, amount, side, ts) in trades.items():
        window = ts // 1_000_000_000 // seconds * seconds
        groups[(exchange, canonical, window)].append((ts, trade_id, price, amount, side))
    out = {}
    with localcontext() as ctx:
        ctx.prec = 100
        for key, items in groups.items():
            items.sort()
            volume = sum((a for *_, a, _s in items), Decimal(0))
            quote = sum((p * a for _t, _i, p, a, _s in items), Decimal(0))
            out[key] = {
                "open": items[0][2],
                "close": items[-1][2],
                "high": max(i[2] for i in items),
                "low": min(i[2] for i in items),
                "volume": volume,
                "quote_volume": quote,
                "trade_count": len(items),
                "taker_buy_volume": sum(
                    (a for _t, _i, _p, a, s in items if s == "buy"), Decimal(0)
                ),
                "vwap": (quote / volume).quantize(_Q18, rounding=ROUND_DOWN),
            }
    return out


def read_candles(store: HotStore, tf: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    rows = store.rows(
        "SELECT exchange, canonical_symbol, toUnixTimestamp(window_start), toString(open), "
        "toString(high), toString(low), toString(close), toString(volume), toString(quote_volume), "
        f"trade_count, toString(taker_buy_volume), toString(vwap) FROM k2.candles_{tf}"
    )
    names = (
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trade_count",
        "taker_buy_volume",
        "vwap",
    )
    return {
        (r[0], r[1], r[2]): {
            n: (v if n == "trade_count" else Decimal(v)) for n, v in zip(names, r[3:], strict=True)
        }
        for r in rows
    }


def assert_candles_equal(store: HotStore, silver: dict[Key, Row]) -> int:
    """Every candle of every timeframe equals the Python computation from silver's trades."""
    checked = 0
    for tf in TIMEFRAMES:
        want, got = expected_candles(silver, tf.seconds), read_candles(store, tf.name)
        assert set(got) == set(want), (
            f"{tf.name}: windows differ: {sorted(set(got) ^ set(want))[:3]}"
        )
        for key, candle in want.items():
            assert got[key] == candle, f"{tf.name} {key}: got {got[key]}, want {candle}"
            assert (
                candle["low"] <= candle["open"] <= candle["high"]
                and candle["low"] <= candle["close"] <= candle["high"]
            )
        checked += len(want)
    return checked


@contextlib.contextmanager
def small_filesystem(path: Path, size_mb: int = 256) -> Iterator[Path]:
    """A tmpfs of `size_mb` mounted at `path`: a disk K2 can be made to fill,
    never the machine's own."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "k2-test", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs to fill (needs root and mount(8)): {done.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def fill_up(path: Path) -> Path:
    """Fill the filesystem holding `path` with a ballast file, to the last byte; return the file."""
    ballast = path / "ballast"
    chunk = b"\1" * 2**20
    with ballast.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]
                if len(chunk) < 512:
                    return ballast


def write_btc_trades(store: HotStore, t0: int, count: int = 3) -> None:
    """Write Binance BTCUSDT trades 1..count through the writer, one a second from `t0` (ns)."""
    from k2.hotstore.resume import last_sequence
    from k2.hotstore.writer import StoreWriter
    from k2.records import Source, Trade
    from k2.settings import WriterSettings

    async def write() -> None:
        writer = StoreWriter(store, WriterSettings(), last_sequence(store))
        trades = [
            Trade(
                "binance",
                "BTCUSDT",
                "BTC/USDT",
                i,
                Decimal("100.5"),
                Decimal("0.25"),
                "buy",
                t0 + i * 10**9,
                t0 + i * 10**9 + 5,
                "true",
                b"{}",
            )
            for i in range(1, count + 1)
        ]
        await writer.trades(trades, trades, "binance-1", Source.WS)
        await writer.close()

    asyncio.run(write())
