"""A deterministic market per (venue, symbol): the sequence of trades depends only on the seed.

Prices and amounts are integers of ticks, formatted to text by the venue modules, so no float
ever touches a value and generation stays cheap enough for a firehose.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable

import msgspec

# Start prices (in quote units) and price decimals by base asset; others start at 100.00.
_START = {
    "BTC": ("60000", 2),
    "ETH": ("3000", 2),
    "BNB": ("600", 2),
    "SOL": ("150", 2),
    "XRP": ("0.5", 4),
    "ADA": ("0.4", 4),
    "DOT": ("7", 3),
    "LINK": ("15", 3),
    "DOGE": ("0.15", 5),
    "LTC": ("80", 2),
    "AVAX": ("35", 2),
    "ATOM": ("9", 3),
    "MATIC": ("0.5", 4),
}
AMOUNT_DECIMALS = 8

# Price moves in ticks per trade, roughly normal; sizes exponential with this mean.
_MOVES = (-3, -2, -2, -1, -1, -1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3)
_MEAN_AMOUNT = 0.05 * 10**AMOUNT_DECIMALS

# A trade's fate on the live stream (REST always has every trade).
SENT, DROPPED, DUPLICATED, DELAYED, POISONED = 0, 1, 2, 3, 4
# How a poisoned trade is changed on the live stream: one field, to a value no store can hold
# exactly (or an id far beyond the stream). K2 must reject the frame and repair the true trade.
POISONS = ("future", "past", "price", "amount", "negative", "id")
_FAR_FUTURE_NS = 253_402_300_799 * 10**9  # 9999-12-31T23:59:59Z
_PAST_NS = 946_684_800 * 10**9  # 2000-01-01: before any venue K2 captures


class SimTrade(msgspec.Struct, frozen=True, gc=False):
    trade_id: int
    price: int  # in units of 10**-price_decimals
    amount: int  # in units of 10**-AMOUNT_DECIMALS
    taker_buy: bool
    ts_ns: int  # µs precision
    price_text: str  # as this venue prints it
    amount_text: str
    fate: int = SENT
    garbage_after: bool = False  # inject a malformed frame after this trade's message


def poison_kind(t: SimTrade) -> str:
    return POISONS[t.trade_id % len(POISONS)]


def poisoned(t: SimTrade) -> SimTrade:
    """The trade as the live stream sends it when poisoned (REST keeps the true one)."""
    kind = poison_kind(t)
    if kind == "future":
        return msgspec.structs.replace(t, ts_ns=_FAR_FUTURE_NS)
    if kind == "past":
        return msgspec.structs.replace(t, ts_ns=_PAST_NS)
    if kind == "price":
        # > Decimal(38, 18)
        return msgspec.structs.replace(t, price_text="123456789012345678901234.5")
    if kind == "amount":
        return msgspec.structs.replace(t, amount_text="0.0000000000000000001")  # 19 decimals
    if kind == "negative":
        return msgspec.structs.replace(t, price_text="-" + t.price_text)
    return msgspec.structs.replace(t, trade_id=t.trade_id + 10**12)  # far beyond any venue's bound


def fmt_fixed(units: int, decimals: int) -> str:
    """Format integer `units` (>= 0) of 10**-decimals as fixed-point text with all decimals."""
    digits = str(units)
    if not decimals:
        return digits
    if len(digits) <= decimals:  # below 1: pad to one leading zero
        digits = "0" * (decimals + 1 - len(digits)) + digits
    return f"{digits[:-decimals]}.{digits[-decimals:]}"


def fmt_min(units: int, decimals: int) -> str:
    """Format like fmt_fixed but without trailing zeros (and no bare trailing point)."""
    text = fmt_fixed(units, decimals)
    return text.rstrip("0").rstrip(".") if "." in text else text


class SymbolMarket:
    """Trades of one symbol on one venue, with the history REST serves."""

    def __init__(
        self,
        venue: str,
        symbol: str,
        base: str,
        seed: int,
        first_id: int,
        id_step_max: int = 1,
        history: int = 50_000,
        text: Callable[[int, int], str] | None = None,
        drop_p: float = 0.0,
        duplicate_p: float = 0.0,
        delay_p: float = 0.0,
        garbage_p: float = 0.0,
        poison_p: float = 0.0,
    ) -> None:
        self.venue, self.symbol = venue, symbol
        self._text = text or fmt_min  # how this venue prints (units, decimals) as text
        self._price_texts: dict[int, str] = {}  # a random walk revisits its price levels
        start, self.price_decimals = _START.get(base.upper(), ("100", 2))
        whole, _, frac = start.partition(".")
        self._price = int(whole) * 10**self.price_decimals + int(
            (frac or "0").ljust(self.price_decimals, "0")
        )
        self._rng = random.Random(f"{seed}:{venue}:{symbol}")
        self._fate_rng = random.Random(f"{seed}:{venue}:{symbol}:faults")
        self._next_id = self._first_id = first_id
        self._id_step_max = id_step_max
        self._cap = history
        self.p = (drop_p, duplicate_p, delay_p, garbage_p, poison_p)
        self.trades: list[SimTrade] = []
        self._ids: list[int] = []
        self._ts: list[int] = []
        self._last_ts = 0
        self.generated = 0

    def generate(self, n: int, start_ns: int, end_ns: int, faults_on: bool) -> list[SimTrade]:
        """Create the next `n` trades, timed evenly in (start_ns, end_ns] at µs precision."""
        rnd, fate_rnd, text, pd = (
            self._rng.random,
            self._fate_rng.random,
            self._text,
            self.price_decimals,
        )
        price_texts = self._price_texts
        if len(price_texts) > 100_000:
            price_texts.clear()
        out = []
        step = (end_ns - start_ns) / n if n else 0
        drop_p, dup_p, delay_p, garbage_p, poison_p = (
            self.p if faults_on else (0.0, 0.0, 0.0, 0.0, 0.0)
        )
        dup_at, delay_at = drop_p + dup_p, drop_p + dup_p + delay_p
        poison_at = delay_at + poison_p
        price, last_ts, next_id = self._price, self._last_ts, self._next_id
        first_id, step_max, moves, n_moves, log = (
            self._first_id,
            self._id_step_max,
            _MOVES,
            len(_MOVES),
            math.log,
        )
        for i in range(n):
            price += moves[int(rnd() * n_moves)]
            if price < 1:
                price = 1
            amount = int(-log(1.0 - rnd()) * _MEAN_AMOUNT) + 1  # exponential sizes
            taker_buy = rnd() < 0.5
            # Strictly increasing µs times: venues that page by time (Kraken `since`) need them.
            ts = int(start_ns + step * (i + 1)) // 1000 * 1000
            if ts < last_ts + 1000:
                ts = last_ts + 1000
            last_ts = ts
            # The same draws per trade whatever is enabled: fates are deterministic for a seed.
            u, g = fate_rnd(), fate_rnd()
            fate = (
                DROPPED
                if u < drop_p
                else DUPLICATED
                if u < dup_at
                else DELAYED
                if u < delay_at
                else POISONED
                if u < poison_at
                else SENT
            )
            if next_id == first_id:
                # A symbol's very first trade always goes out: no client could tell a lost first
                # trade from no trade at all, and every scripted fault must be recoverable.
                fate = SENT
            price_text = price_texts.get(price)
            if price_text is None:
                price_text = price_texts[price] = text(price, pd)
            out.append(
                SimTrade(
                    next_id,
                    price,
                    amount,
                    taker_buy,
                    ts,
                    price_text,
                    text(amount, AMOUNT_DECIMALS),
                    fate,
                    g < garbage_p,
                )
            )
            next_id += 1 if step_max == 1 else 1 + int(rnd() * step_max)
        self._price, self._last_ts, self._next_id = price, last_ts, next_id
        self.trades.extend(out)
        self._ids.extend(t.trade_id for t in out)
        self._ts.extend(t.ts_ns for t in out)
        self.generated += n
        if len(self.trades) > 2 * self._cap:
            cut = len(self.trades) - self._cap
            del self.trades[:cut], self._ids[:cut], self._ts[:cut]
        return out

    def from_id(self, first_id: int, limit: int) -> list[SimTrade]:
        i = bisect.bisect_left(self._ids, first_id)
        return self.trades[i : i + limit]

    def after_time(self, since_ns: int, limit: int) -> list[SimTrade]:
        """Trades strictly after `since_ns`, oldest first."""
        i = bisect.bisect_right(self._ts, since_ns)
        return self.trades[i : i + limit]

    def between(self, start_ns: int, end_ns: int) -> list[SimTrade]:
        """Trades with start_ns <= ts <= end_ns, oldest first."""
        return self.trades[
            bisect.bisect_left(self._ts, start_ns) : bisect.bisect_right(self._ts, end_ns)
        ]

    def recent(self, n: int) -> list[SimTrade]:
        return self.trades[-n:] if n else []
