"""The one text form (query/frames.py), vectorized, equals the per-value reference for any value
the stores can hold: decimals as records.decimal_text writes them, times as timeutil's RFC 3339."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from k2.query import frames
from k2.records import decimal_text
from k2.timeutil import ns_to_rfc3339

DECIMALS = st.decimals(
    min_value=Decimal("-1e20") + 1, max_value=Decimal("1e20") - 1, places=18, allow_nan=False
)
TIMES = st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(DECIMALS, min_size=1, max_size=50))
def test_decimal_text_equals_the_reference(values: list[Decimal]) -> None:
    column = pa.array(values, frames.DECIMAL)
    assert frames.decimal_text(column).to_pylist() == [decimal_text(v) for v in values]


@settings(max_examples=300, deadline=None)
@given(st.lists(TIMES, min_size=1, max_size=50))
def test_time_text_equals_the_reference(values: list[int]) -> None:
    column = pa.array(values, frames.TIME)
    want = ["" if v == 0 else ns_to_rfc3339(v) for v in values]
    assert frames.time_text(column).to_pylist() == want
