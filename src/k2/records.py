"""The normalized records every stage passes along.

Prices and amounts are `Decimal` built from the venue's text; times are integer UTC nanoseconds.
See docs/RECORD_SEMANTICS.md for the meaning of every field.
"""

from __future__ import annotations

import enum
from decimal import Decimal

import msgspec

from k2.timeutil import ns_to_rfc3339

BUY = "buy"
SELL = "sell"


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One trade as normalized from a venue message or REST row."""

    exchange: str
    symbol: str  # venue-native symbol, as the venue spells it (BTCUSDT, BTC/USD, BTC-USD)
    canonical_symbol: str  # BASE/QUOTE with venue aliases mapped (XBT -> BTC, XDG -> DOGE)
    trade_id: int
    price: Decimal
    amount: Decimal
    taker_side: str  # "buy" | "sell": the aggressor's side
    ts_event: int  # exchange trade time, UTC ns, at the venue's full precision
    ts_recv: int  # local receive time, UTC ns
    venue_side: str = ""  # the venue's own side field, verbatim (kept in bronze)
    raw: bytes = b""  # the venue's JSON for this trade, verbatim (kept in bronze)


class Source(enum.StrEnum):
    """How a trade reached K2 (bronze's `source` enum has the same values)."""

    WS = "ws"  # a live WebSocket message
    REST = "rest"  # a REST page fetched to repair a gap


class Outcome(enum.StrEnum):
    """What became of a gap (the hot store's `feed_gaps.outcome` enum has the same values)."""

    PENDING = "pending"  # detected; repair queued, running, or resumed at the next start
    REPAIRED = "repaired"  # every missing trade recovered
    PARTIAL = "partial"  # some recovered, some still missing
    UNRECOVERABLE = "unrecoverable"  # the venue could not (or would not) return them
    # an id jump beyond the venue's bound: recorded, never fetched blindly
    SUSPICIOUS = "suspicious"


class GapKind(enum.StrEnum):
    IDS = "ids"  # an id range (venues with contiguous ids)
    WINDOW = "window"  # a time window after a disconnect or a lost message (ids may skip)


PENDING, REPAIRED, PARTIAL = Outcome.PENDING, Outcome.REPAIRED, Outcome.PARTIAL
UNRECOVERABLE, SUSPICIOUS = Outcome.UNRECOVERABLE, Outcome.SUSPICIOUS


class Gap(msgspec.Struct, frozen=True):
    """A detected hole in a (venue, symbol) trade stream and what became of it."""

    gap_id: str
    exchange: str
    symbol: str
    # The ids missing, inclusive: an id gap's first and last. A window gap (ids are not a
    # sequence) has first_id = the highest id seen before the hole + 1, and last_id = 0.
    first_id: int
    last_id: int
    # Event times around the hole, UTC ns. An id gap: the trades either side (0 if unknown). A
    # window gap: ts_from is the newest trade before the loss; ts_to is 0 until its repair
    # starts, then the time the repair reads up to.
    ts_from: int
    ts_to: int
    detected_at: int  # UTC ns
    resolved_at: int  # UTC ns, 0 while pending
    outcome: Outcome
    # ids still missing after the repair (window gaps: always 0, the count is unknowable)
    missing: int
    recovered: int  # trades recovered for this gap (REST or late WS arrival)
    kind: GapKind = GapKind.IDS
    # why, where it is not obvious (a suspicious jump: how far, and the venue's bound)
    detail: str = ""


class Reject(msgspec.Struct, frozen=True):
    """A message that failed validation, quarantined with its raw text."""

    exchange: str
    reason: str
    raw: bytes
    ts_recv: int
    conn_id: str


TRADE_KEYS = (
    "exchange",
    "symbol",
    "canonical_symbol",
    "trade_id",
    "price",
    "amount",
    "taker_side",
    "ts_event",
    "ts_recv",
)


def decimal_text(value: Decimal) -> str:
    """Return a decimal in K2's text form: plain notation, never an exponent, no trailing
    fractional zeros or point (`0.00821700` is `0.008217`, `100.0` is `100`). Every output uses
    it, whichever tier a row comes from (query/frames.py; docs/RECORD_SEMANTICS.md)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def trade_json(trade: Trade) -> dict[str, str | int]:
    """Return the JSON form of a trade (`k2 normalize`, `k2 watch --record`).

    `k2 trades` has the same keys and the same text form.
    """
    return {
        "exchange": trade.exchange,
        "symbol": trade.symbol,
        "canonical_symbol": trade.canonical_symbol,
        "trade_id": trade.trade_id,
        "price": decimal_text(trade.price),
        "amount": decimal_text(trade.amount),
        "taker_side": trade.taker_side,
        "ts_event": ns_to_rfc3339(trade.ts_event),
        "ts_recv": ns_to_rfc3339(trade.ts_recv),
    }


def gap_json(gap: Gap) -> dict[str, str | int]:
    """Return the JSON form of a gap (`k2 watch --record`'s list of gaps left open)."""
    return {
        "exchange": gap.exchange,
        "symbol": gap.symbol,
        "kind": str(gap.kind),
        "first_id": gap.first_id,
        "last_id": gap.last_id,
        "ts_from": ns_to_rfc3339(gap.ts_from) if gap.ts_from else "",
        "ts_to": ns_to_rfc3339(gap.ts_to) if gap.ts_to else "",
        "outcome": str(gap.outcome),
        "gap_id": gap.gap_id,
    }
