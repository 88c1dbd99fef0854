"""What the stores hold exactly: the one definition of every limit a normalized trade must meet.

Every value an adapter emits must fit the hot store (ClickHouse `Decimal(38, 18)`, `UInt64`,
`DateTime64(9)`) and the archive (Iceberg `decimal(38, 18)`, `long`, nanoseconds in a `long`)
without rounding, truncation or overflow; anything else is a reject. The rules are written here
once: `decimal_problem` for a price or an amount on its own (the price caches use it), and
`trade_problem` for a whole trade, which every adapter calls on every trade it emits.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from k2.records import Trade

MIN_EVENT_NS = calendar.timegm((2010, 1, 1, 0, 0, 0)) * 1_000_000_000  # before any venue K2 knows
DEFAULT_MAX_SKEW_S = 86_400.0  # a venue's clock may run ahead of ours by a day at most
# Trade ids: UInt64 in the hot store, but the archive's Iceberg `long` is signed: the narrower wins.
MAX_TRADE_ID = 2**63 - 1
INTEGER_DIGITS = 20  # Decimal(38, 18): 38 digits in all, 18 of them after the point
FRACTION_DIGITS = 18

# quantize() to 18 places in a 38-digit context raises InvalidOperation when more than 20 integer
# digits would be needed and Inexact when a non-zero digit lies beyond the 18th decimal: exactly
# "fits Decimal(38, 18)", in one C call. Trailing zeros beyond 18 places are fine (nothing lost).
_FIT = Context(prec=INTEGER_DIGITS + FRACTION_DIGITS, traps=[Inexact, InvalidOperation])
_QUANTUM = Decimal(1).scaleb(-FRACTION_DIGITS)
_QUOTE_MAX = Decimal(10) ** INTEGER_DIGITS
# a product of two valid values, exactly
_EXACT = Context(prec=2 * (INTEGER_DIGITS + FRACTION_DIGITS))


@dataclass(frozen=True, slots=True)
class Limits:
    """The configurable part of the rules (setting `ingest.max_clock_skew_s`)."""

    max_skew_ns: int = int(DEFAULT_MAX_SKEW_S * 1e9)

    @classmethod
    def from_skew(cls, seconds: float) -> Limits:
        return cls(int(seconds * 1_000_000_000))


DEFAULT_LIMITS = Limits()


def decimal_problem(value: Decimal) -> str | None:
    """Why `value` cannot be a price or an amount (None if it can): it must be finite, greater
    than 0 and fit Decimal(38, 18) exactly."""
    # Predicates, not `value > 0`: comparing with an int is several times slower. is_normal():
    # finite and non-zero.
    if not value.is_normal() or value.is_signed():
        return f"must be a positive finite number, got {value}"
    try:
        _FIT.quantize(value, _QUANTUM)
    except ArithmeticError:
        return (
            f"{value} does not fit Decimal(38, 18) exactly (at most {INTEGER_DIGITS} integer and "
            f"{FRACTION_DIGITS} fractional digits)"
        )
    return None


def trade_problem(trade: Trade, limits: Limits, price_checked: bool = False) -> str | None:
    """Why `trade` cannot be stored exactly (None if it can).

    - price and amount: `decimal_problem`;
    - price x amount (silver's quote amount) below 10**20;
    - event time from 2010-01-01 to the local receive time plus the allowed clock skew;
    - trade id within 0..2**63 - 1;
    - the raw JSON kept for bronze is UTF-8 (the archive stores it as an Iceberg string).

    `price_checked`: the price came from a DecimalCache, which admits only valid values.
    """
    price, amount = trade.price, trade.amount
    if not price_checked:
        problem = decimal_problem(price)
        if problem is not None:
            return f"price {problem}"
    problem = decimal_problem(amount)
    if problem is not None:
        return f"amount {problem}"
    # adjusted() is the exponent of the leading digit, so the product is below 10**(a + b + 2): it
    # can reach 10**20 only when a + b >= 19.
    if (
        price.adjusted() + amount.adjusted() >= INTEGER_DIGITS - 1
        and _EXACT.multiply(price, amount) >= _QUOTE_MAX
    ):
        return (
            f"price x amount ({price} x {amount}) needs more than {INTEGER_DIGITS} digits "
            "before the point"
        )
    ts = trade.ts_event
    if ts < MIN_EVENT_NS:
        return f"event time {ts} ns is before 2010-01-01"
    if ts > trade.ts_recv + limits.max_skew_ns:
        return (
            f"event time {ts} ns is more than {limits.max_skew_ns / 1e9:.0f} s "
            "ahead of the local clock"
        )
    if not 0 <= trade.trade_id <= MAX_TRADE_ID:
        return f"trade id {trade.trade_id} is outside 0..{MAX_TRADE_ID}"
    raw = trade.raw
    if not raw.isascii():  # venues send ASCII: the full check only runs for the rest
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return f"the trade's JSON is not valid UTF-8 ({err.reason} at byte {err.start})"
    return None
