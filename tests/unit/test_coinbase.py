import json

import pytest

from k2.errors import ParseError
from k2.exchanges.base import Signal
from k2.exchanges.coinbase import CoinbaseAdapter
from tests.conftest import sample_raw

RECV = 1_800_000_000_000_000_002


@pytest.fixture
def adapter() -> CoinbaseAdapter:
    return CoinbaseAdapter()


def test_market_trades_every_field(adapter: CoinbaseAdapter) -> None:
    parsed = adapter.parse(sample_raw("coinbase-market_trades.json"), RECV)
    (t,) = parsed.trades
    assert (t.exchange, t.symbol, t.canonical_symbol) == ("coinbase", "ETH-USD", "ETH/USD")
    assert t.trade_id == 0  # "000000000": a string of digits
    assert str(t.price) == "1260.01" and str(t.amount) == "0.3"
    assert t.venue_side == "BUY" and t.taker_side == "sell"  # side is the maker's: inverted
    assert t.ts_event == 1565815347_265000000  # 2019-08-14T20:42:27.265Z
    assert t.ts_recv == RECV
    assert json.loads(t.raw)["product_id"] == "ETH-USD"
    assert parsed.sequence == 0


def test_nanosecond_times_and_maker_sell(adapter: CoinbaseAdapter) -> None:
    raw = (
        b'{"channel":"market_trades","sequence_num":7,"events":[{"type":"update","trades":['
        b'{"trade_id":"12","product_id":"BTC-USD","price":"1.5","size":"2","side":"SELL","time":"2024-01-01T00:00:00.123456789Z"},'
        b'{"trade_id":"11","product_id":"BTC-USD","price":"1.4","size":"1","side":"BUY","time":"2024-01-01T00:00:00.1Z"}]}]}'
    )
    parsed = adapter.parse(raw, RECV)
    a, b = parsed.trades
    assert a.trade_id == 12 and a.taker_side == "buy" and a.ts_event == 1704067200_123456789
    assert b.trade_id == 11 and b.taker_side == "sell" and b.ts_event == 1704067200_100000000
    assert parsed.sequence == 7


def test_heartbeats_and_subscriptions(adapter: CoinbaseAdapter) -> None:
    parsed = adapter.parse(sample_raw("coinbase-heartbeats.json"), RECV)
    assert parsed.signal is Signal.HEARTBEAT and parsed.sequence == 0
    subs = (
        b'{"channel":"subscriptions","client_id":"","timestamp":"2024-01-01T00:00:00Z",'
        b'"sequence_num":1,"events":[{"subscriptions":{}}]}'
    )
    assert adapter.parse(subs, RECV).signal is Signal.SUBSCRIBED
    err = b'{"type":"error","message":"Failed to subscribe"}'
    parsed = adapter.parse(err, RECV)
    assert parsed.signal is Signal.ERROR and parsed.detail == "Failed to subscribe"


@pytest.mark.parametrize(
    "bad",
    [
        b'{"channel":"market_trades","events":[{"type":"update","trades":[{"trade_id":"x1","product_id":"BTC-USD","price":"1","size":"1","side":"BUY","time":"2024-01-01T00:00:00Z"}]}]}',
        b'{"channel":"market_trades","events":[{"type":"update","trades":[{"trade_id":"1","product_id":"BTC-USD","price":"NaN","size":"1","side":"BUY","time":"2024-01-01T00:00:00Z"}]}]}',
        b'{"channel":"market_trades","events":[{"type":"update","trades":[{"trade_id":"1","product_id":"BTCUSD","price":"1","size":"1","side":"BUY","time":"2024-01-01T00:00:00Z"}]}]}',
        b'{"channel":"market_trades","events":[{"type":"weird","trades":[]}]}',
        b'{"channel":"market_trades"}',
        b'"just a string"',
        b'{"hello":1}',
    ],
)
def test_malformed(adapter: CoinbaseAdapter, bad: bytes) -> None:
    with pytest.raises(ParseError):
        adapter.parse(bad, RECV)


def test_rest_market_trades(adapter: CoinbaseAdapter) -> None:
    trades = json.loads(sample_raw("coinbase-market_trades.json"))["events"][0]["trades"]
    (t,) = adapter.parse_rest_trades(
        json.dumps({"trades": trades, "best_bid": "", "best_ask": ""}).encode(), RECV
    )
    assert (t.trade_id, str(t.price), t.taker_side) == (0, "1260.01", "sell")


def test_subscribe_messages_one_channel_each(adapter: CoinbaseAdapter) -> None:
    trades, beats = (json.loads(m) for m in adapter.subscribe_messages(["BTC-USD", "ETH-USD"]))
    assert trades == {
        "type": "subscribe",
        "product_ids": ["BTC-USD", "ETH-USD"],
        "channel": "market_trades",
    }
    assert beats == {"type": "subscribe", "channel": "heartbeats"}
