from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from k2.simulator.market import fmt_fixed, fmt_min


@given(st.integers(0, 10**20), st.integers(0, 18))
def test_fixed_point_text_is_exact(units: int, decimals: int) -> None:
    text = fmt_fixed(units, decimals)
    expected = Decimal(units).scaleb(-decimals)
    assert text == format(expected, "f")  # every decimal, one leading zero below 1
    short = fmt_min(units, decimals)
    assert Decimal(short) == expected
    assert "." not in short or not short.endswith(("0", "."))  # no trailing zeros, no bare point
