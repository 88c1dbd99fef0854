import json
from decimal import Decimal

import pytest

from k2.errors import ParseError, RateLimited, VenueRejected, VenueRequestError
from k2.exchanges.base import Signal
from k2.exchanges.kraken import KrakenAdapter, check_response, rest_pair_guess
from tests.conftest import sample_bytes, sample_raw

RECV = 1_800_000_000_000_000_001


@pytest.fixture
def adapter() -> KrakenAdapter:
    return KrakenAdapter()


def test_snapshot_every_field(adapter: KrakenAdapter) -> None:
    parsed = adapter.parse(sample_raw("kraken-snapshot.json"), RECV)
    a, b = parsed.trades
    assert (a.exchange, a.symbol, a.canonical_symbol) == ("kraken", "MATIC/USD", "MATIC/USD")
    assert a.trade_id == 4665846 and b.trade_id == 4665847
    # JSON numbers parsed from their text: no float rounding anywhere.
    assert str(a.price) == "0.5147" and str(a.amount) == "6423.46326"
    assert str(b.price) == "0.5147" and str(b.amount) == "1136.19677815"
    assert a.taker_side == "buy" and a.venue_side == "buy"  # v2 side is the taker's side
    assert a.ts_event == 1695628116_925533000  # 2023-09-25T07:48:36.925533Z
    assert b.ts_event == 1695628176_925603000
    assert a.ts_recv == RECV
    assert json.loads(a.raw)["trade_id"] == 4665846
    assert parsed.rejected == ()


def test_numbers_never_go_through_float(adapter: KrakenAdapter) -> None:
    raw = (
        b'{"channel":"trade","type":"update","data":[{"symbol":"XBT/USD","side":"sell",'
        b'"price":0.100000000000000055,"qty":123456789.123456789,"ord_type":"market",'
        b'"trade_id":1,"timestamp":"2023-09-25T07:48:36.000001Z"}]}'
    )
    (t,) = adapter.parse(raw, RECV).trades
    assert t.price == Decimal("0.100000000000000055") and t.amount == Decimal("123456789.123456789")
    assert t.canonical_symbol == "BTC/USD" and t.taker_side == "sell"
    # A 20th decimal would be cut off by the stores' Decimal(38, 18): the trade is a reject instead.
    with pytest.raises(ParseError, match="does not fit Decimal"):
        adapter.parse(raw.replace(b"0.100000000000000055", b"0.10000000000000000555"), RECV)


def test_heartbeat_pong_status(adapter: KrakenAdapter) -> None:
    assert adapter.parse(sample_raw("kraken-heartbeat.json"), RECV).signal is Signal.HEARTBEAT
    assert adapter.parse(sample_raw("kraken-pong.json"), RECV).signal is Signal.HEARTBEAT
    status = b'{"channel":"status","type":"update","data":[{"api_version":"v2","system":"online"}]}'
    assert adapter.parse(status, RECV).signal is Signal.INFO


def test_subscribe_ack_and_failure(adapter: KrakenAdapter) -> None:
    ok = (
        b'{"method":"subscribe",'
        b'"result":{"channel":"trade","symbol":"BTC/USD","snapshot":true},"success":true}'
    )
    assert adapter.parse(ok, RECV).signal is Signal.SUBSCRIBED
    bad = b'{"error":"Currency pair not supported XX/YY","method":"subscribe","success":false}'
    parsed = adapter.parse(bad, RECV)
    assert parsed.signal is Signal.ERROR and "Currency pair not supported" in parsed.detail


def test_bad_trade_in_a_batch_spares_its_neighbours(adapter: KrakenAdapter) -> None:
    raw = (
        b'{"channel":"trade","type":"update","data":['
        b'{"symbol":"BTC/USD","side":"buy","price":1.5,"qty":2,"trade_id":10,"timestamp":"2024-01-01T00:00:00.5Z"},'
        b'{"symbol":"BTC/USD","side":"up","price":1.5,"qty":2,"trade_id":11,"timestamp":"2024-01-01T00:00:00Z"}]}'
    )
    parsed = adapter.parse(raw, RECV)
    assert [t.trade_id for t in parsed.trades] == [10] and len(parsed.rejected) == 1
    assert parsed.trades[0].ts_event == 1704067200_500000000


@pytest.mark.parametrize("name", ["kraken-v1-trade.json", "kraken-subscribe-request.json"])
def test_unexpected_shapes(adapter: KrakenAdapter, name: str) -> None:
    with pytest.raises(ParseError):
        adapter.parse(sample_raw(name), RECV)


def test_rest_trades_every_field(adapter: KrakenAdapter) -> None:
    trades, last = adapter.parse_rest_trades("BTC/USD", sample_raw("kraken-rest-trades.json"), RECV)
    assert last == 1688671969993150842
    assert [t.trade_id for t in trades] == [61044952, 61044953, 61044956]
    a = trades[0]
    assert (a.exchange, a.symbol, a.canonical_symbol) == ("kraken", "BTC/USD", "BTC/USD")
    assert str(a.price) == "30243.40000" and str(a.amount) == "0.34507674"
    assert a.taker_side == "buy" and a.venue_side == "b" and trades[1].taker_side == "sell"
    # 1688669597.8277369 is a float with sub-µs noise: rounded to the µs it encodes.
    assert a.ts_event == 1688669597_827737000 and trades[2].ts_event == 1688669602_698379000
    assert a.raw.startswith(b'["30243.40000"')


def test_rest_errors_are_typed() -> None:
    with pytest.raises(RateLimited):
        check_response(b'{"error":["EAPI:Rate limit exceeded"]}')
    with pytest.raises(VenueRequestError):
        check_response(b'{"error":["EService:Unavailable"]}')
    with pytest.raises(VenueRejected):
        check_response(b'{"error":["EQuery:Unknown asset pair"]}')


def test_subscribe_message_sends_snapshot_explicitly(adapter: KrakenAdapter) -> None:
    (msg,) = adapter.subscribe_messages(["BTC/USD"])
    assert json.loads(msg) == {
        "method": "subscribe",
        "params": {"channel": "trade", "symbol": ["BTC/USD"], "snapshot": True},
    }
    assert json.loads(sample_bytes("kraken-subscribe-request.json"))["params"]["snapshot"] is True


def test_rest_pair_guess() -> None:
    assert rest_pair_guess("BTC/USD") == "XBTUSD" and rest_pair_guess("DOGE/USD") == "XDGUSD"
