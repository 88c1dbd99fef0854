"""The stores' limits (exchanges/limits.py), against an independent statement of Decimal(38, 18)."""

from __future__ import annotations

import time
from decimal import Decimal, localcontext

from hypothesis import given
from hypothesis import strategies as st

from k2.exchanges.limits import MAX_TRADE_ID, MIN_EVENT_NS, Limits, decimal_problem, trade_problem
from k2.hotstore.rows import decimal_texts
from k2.records import Trade

NOW = time.time_ns()


def fits_decimal_38_18(value: Decimal) -> bool:
    """The oracle: a positive finite number that Decimal(38, 18) holds without losing a digit."""
    if not value.is_finite() or value <= 0:
        return False
    with localcontext() as ctx:
        ctx.prec = 200
        scaled = value.scaleb(18)
        return scaled == scaled.to_integral_value() and value < Decimal(10) ** 20


decimals = st.builds(
    lambda digits, exponent, sign: Decimal(f"{sign}{digits}E{exponent}"),
    st.integers(0, 10**45),
    st.integers(-45, 25),
    st.sampled_from(["", "-"]),
)


@given(decimals)
def test_decimal_problem_is_exactly_what_decimal_38_18_holds(value: Decimal) -> None:
    assert (decimal_problem(value) is None) == fits_decimal_38_18(value)


def test_decimal_edges() -> None:
    assert decimal_problem(Decimal("99999999999999999999.999999999999999999")) is None
    assert decimal_problem(Decimal(100000000000000000000)) is not None  # 21 integer digits
    assert decimal_problem(Decimal("0.000000000000000001")) is None
    # 19 decimals: would become 0
    assert decimal_problem(Decimal("0.0000000000000000001")) is not None
    # trailing zeros lose nothing
    assert decimal_problem(Decimal("1.000000000000000000000")) is None
    for bad in ("0", "-1", "NaN", "sNaN", "Infinity", "1E+999999999"):
        assert decimal_problem(Decimal(bad)) is not None, bad


def trade(
    price: str = "1", amount: str = "1", ts: int = NOW, trade_id: int = 1, raw: bytes = b"{}"
) -> Trade:
    return Trade(
        "binance",
        "BTCUSDT",
        "BTC/USDT",
        trade_id,
        Decimal(price),
        Decimal(amount),
        "buy",
        ts,
        NOW,
        "false",
        raw,
    )


def test_every_rule_of_a_trade() -> None:
    limits = Limits.from_skew(60)
    assert trade_problem(trade(), limits) is None
    assert "price" in (trade_problem(trade(price="-1"), limits) or "")
    assert "amount" in (trade_problem(trade(amount="1E-19"), limits) or "")
    # just below 10^20
    assert trade_problem(trade(price="9999999999", amount="9999999999.5"), limits) is None
    assert "price x amount" in (
        trade_problem(trade(price="10000000000", amount="10000000000"), limits) or ""
    )
    assert trade_problem(trade(ts=MIN_EVENT_NS), limits) is None
    assert "before 2010" in (trade_problem(trade(ts=MIN_EVENT_NS - 1), limits) or "")
    assert trade_problem(trade(ts=NOW + 60 * 10**9), limits) is None
    assert "ahead of the local clock" in (trade_problem(trade(ts=NOW + 61 * 10**9), limits) or "")
    assert trade_problem(trade(trade_id=MAX_TRADE_ID), limits) is None
    assert "outside" in (trade_problem(trade(trade_id=MAX_TRADE_ID + 1), limits) or "")
    assert "outside" in (trade_problem(trade(trade_id=-1), limits) or "")
    assert "UTF-8" in (trade_problem(trade(raw=b'{"s":"\xff"}'), limits) or "")
    assert trade_problem(trade(raw='{"s":"é"}'.encode()), limits) is None


@given(st.lists(decimals.filter(fits_decimal_38_18), min_size=1, max_size=20))
def test_decimal_text_for_the_store_is_exact_and_never_in_exponent_form(
    values: list[Decimal],
) -> None:
    texts = decimal_texts(values).to_pylist()
    assert all("E" not in t and "e" not in t for t in texts)
    assert [Decimal(t) for t in texts] == values
