"""Planning an archive read from each data file's bounds (query/cold_files.py)."""

from __future__ import annotations

from k2.query.cold_files import DataFile

FILE = DataFile(
    "/x.parquet",
    {"exchange": "binance", "canonical_symbol": "BTC/USDT", "ts_event_ns": 100},
    {"exchange": "binance", "canonical_symbol": "ETH/USDT", "ts_event_ns": 199},
)


def test_a_file_may_hold_what_its_bounds_admit() -> None:
    assert FILE.may_hold({"exchange": "binance", "canonical_symbol": "DOGE/USDT"}, {})
    assert FILE.may_hold({}, {"ts_event_ns": (199, 200)})  # the upper bound is inclusive
    assert FILE.may_hold({}, {"ts_event_ns": (0, 101)})
    assert FILE.may_hold({}, {"ts_event_ns": (None, None)})


def test_a_file_is_skipped_only_where_its_bounds_rule_the_rows_out() -> None:
    assert not FILE.may_hold({"exchange": "kraken"}, {})
    assert not FILE.may_hold({"canonical_symbol": "SOL/USDT"}, {})  # after ETH/USDT
    assert not FILE.may_hold({"canonical_symbol": "ADA/USDT"}, {})  # before BTC/USDT
    assert not FILE.may_hold({}, {"ts_event_ns": (200, None)})
    assert not FILE.may_hold({}, {"ts_event_ns": (None, 100)})  # the end is exclusive
    assert not FILE.may_hold({}, {"ts_event_ns": (0, 100)})


def test_a_column_without_bounds_rules_nothing_out() -> None:
    bare = DataFile("/y.parquet", {}, {})
    assert bare.may_hold({"exchange": "kraken", "canonical_symbol": "X"}, {"ts_event_ns": (5, 6)})
