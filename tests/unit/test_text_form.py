"""The one text form (query/frames.py), vectorized, equals the per-value reference for any value
the stores can hold: decimals as records.decimal_text writes them, times as timeutil's RFC 3339."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from k2.query import frames, stream, text_lines
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


def _slow(table: pa.Table, fmt: stream.Format, header: bool) -> bytes:
    """The encoders' row-by-row form: orjson per row dict, Python's csv module."""
    text = frames.as_text(table)
    if fmt is stream.Format.jsonl:
        return b"".join(orjson.dumps(row) + b"\n" for row in text.to_pylist())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(table.schema.names)
    writer.writerows(zip(*(c.to_pylist() for c in text.columns), strict=True))
    return out.getvalue().encode()


def _trades(symbols: list[str], recv: list[int]) -> pa.Table:
    n = len(symbols)
    return pa.table(
        {
            "exchange": ["binance"] * n,
            "symbol": symbols,
            "canonical_symbol": [s.upper() for s in symbols],
            "trade_id": [2**62 + i for i in range(n)],
            "price": pa.array([Decimal("60000.1400"), Decimal("1E-8")] * (n // 2), frames.DECIMAL),
            "amount": pa.array([Decimal(0), Decimal("12345678.5")] * (n // 2), frames.DECIMAL),
            "taker_side": ["buy", "sell"] * (n // 2),
            "ts_event": pa.array([1_700_000_000_123_456_789 + i for i in range(n)], frames.TIME),
            "ts_recv": pa.array(recv, frames.TIME),
        },
        schema=frames.TRADE_SCHEMA,
    )


def _fast(fmt: stream.Format, table: pa.Table) -> bytes | None:
    return text_lines.jsonl(table) if fmt is stream.Format.jsonl else text_lines.csv(table, True)


@pytest.mark.parametrize("fmt", [stream.Format.jsonl, stream.Format.csv])
def test_arrow_built_lines_equal_the_row_by_row_ones(fmt: stream.Format) -> None:
    """JSON lines and CSV built by Arrow (query/text_lines.py) are byte for byte what orjson and
    the csv module write. A value the fast path cannot take (a quote, a comma, a backslash, a
    control character) sends its table the slow way, with the same result."""
    plain = _trades(["BTCUSDT", "ÉTH USD"], [1_700_000_000_000_000_001, 0])  # 0: an empty time
    assert _fast(fmt, plain) is not None
    odd = ('A"B', "A,B", "A\\B", "A\nB", "A\x01")
    # a string JSON must escape; a field CSV must quote
    slow = {
        stream.Format.jsonl: ('A"B', "A\\B", "A\nB", "A\x01"),
        stream.Format.csv: ('A"B', "A,B", "A\nB"),
    }
    awkward = [_trades([o, "C"], [1, 2]) for o in odd]
    assert [_fast(fmt, t) is None for t in awkward] == [o in slow[fmt] for o in odd]
    for i, table in enumerate([plain, *awkward, plain]):
        encoder = stream.Encoder(fmt, frames.TRADE_SCHEMA)
        assert encoder.write(table) == _slow(table, fmt, header=True), i
        assert encoder.write(table) == _slow(table, fmt, header=False), i


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([stream.Format.jsonl, stream.Format.csv]),
    st.lists(st.text(), min_size=2, max_size=6).filter(lambda x: len(x) % 2 == 0),
)
def test_any_symbol_text_encodes_as_the_row_by_row_writers_do(
    fmt: stream.Format, symbols: list[str]
) -> None:
    table = _trades(symbols, list(range(len(symbols))))
    encoder = stream.Encoder(fmt, frames.TRADE_SCHEMA)
    assert encoder.write(table) == _slow(table, fmt, header=True)
