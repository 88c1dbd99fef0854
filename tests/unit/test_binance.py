from decimal import Decimal

import pytest

from k2.errors import ParseError
from k2.exchanges.base import Parsed, Signal, as_parsed
from k2.exchanges.binance import BinanceAdapter, split_symbol
from k2.records import Trade
from tests.conftest import sample_bytes, sample_raw

RECV = 1_800_000_000_123_456_789


@pytest.fixture
def adapter() -> BinanceAdapter:
    return BinanceAdapter()


def test_trade_raw_stream_every_field(adapter: BinanceAdapter) -> None:
    raw = sample_raw("binance-trade.json")
    t = adapter.parse(raw, RECV)
    assert type(t) is Trade  # one trade per message: it comes back bare, no Parsed around it
    assert as_parsed(t) == Parsed((t,))
    assert t.exchange == "binance"
    assert t.symbol == "BNBBTC"
    assert t.canonical_symbol == "BNB/BTC"
    assert t.trade_id == 12345
    assert t.price == Decimal("0.001") and str(t.price) == "0.001"
    assert t.amount == Decimal(100) and str(t.amount) == "100"
    assert t.taker_side == "sell"  # m=true: the buyer was the maker, so the seller aggressed
    assert t.ts_event == 1672515782136 * 1_000_000  # milliseconds in the documented sample
    assert t.ts_recv == RECV
    assert t.venue_side == "true"
    assert t.raw == raw


def test_trade_combined_stream_microseconds(adapter: BinanceAdapter) -> None:
    raw = (
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1672515782136001,"s":"BTCUSDT","t":7,'
        b'"p":"16500.01000000","q":"0.00120000","T":1672515782136123,"m":false,"M":true}}'
    )
    parsed = as_parsed(adapter.parse(raw, RECV))
    (t,) = parsed.trades
    assert (t.symbol, t.canonical_symbol, t.trade_id) == ("BTCUSDT", "BTC/USDT", 7)
    assert str(t.price) == "16500.01000000" and str(t.amount) == "0.00120000"
    assert t.taker_side == "buy"
    assert t.ts_event == 1672515782136123 * 1000  # timeUnit=MICROSECOND
    assert t.venue_side == "false" and t.raw == raw
    assert parsed.signal is None and parsed.sequence is None


def test_server_shutdown_signals_rotation(adapter: BinanceAdapter) -> None:
    parsed = as_parsed(adapter.parse(sample_bytes("binance-servershutdown-combined.json"), RECV))
    assert parsed.trades == () and parsed.signal is Signal.SHUTDOWN


def test_subscribe_response_is_an_ack(adapter: BinanceAdapter) -> None:
    parsed = as_parsed(adapter.parse(sample_raw("binance-subscribe-response.json"), RECV))
    assert parsed.trades == () and parsed.signal is Signal.SUBSCRIBED


def test_a_reply_with_a_result_is_information_not_an_error(adapter: BinanceAdapter) -> None:
    # LIST_SUBSCRIPTIONS answers with the stream names in `result` (an array, not null).
    parsed = as_parsed(adapter.parse(b'{"result":["btcusdt@trade"],"id":3}', RECV))
    assert parsed.trades == () and parsed.signal is Signal.INFO


def test_a_bad_combined_payload_is_reported_by_its_own_fault(adapter: BinanceAdapter) -> None:
    raw = (
        b'{"stream":"btcusdt@trade",'
        b'"data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1","T":1,"m":true}}'
    )
    with pytest.raises(ParseError, match="`q`"):
        adapter.parse(raw, RECV)


def test_error_message_is_reported_not_raised(adapter: BinanceAdapter) -> None:
    parsed = as_parsed(adapter.parse(sample_raw("binance-rest-error.json"), RECV))
    assert (
        parsed.signal is Signal.ERROR
        and "-1121" in parsed.detail
        and "Invalid symbol" in parsed.detail
    )


@pytest.mark.parametrize("name", ["binance-aggtrade.json", "binance-subscribe-request.json"])
def test_unexpected_messages_raise_parse_error(adapter: BinanceAdapter, name: str) -> None:
    with pytest.raises(ParseError):
        adapter.parse(sample_raw(name), RECV)


@pytest.mark.parametrize(
    "bad",
    [
        b'{"stream":"x@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}}',
        b'{"stream":"x@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"-1","q":"1","T":1,"m":true}}',
        b'{"stream":"x@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"NaN","q":"1","T":1,"m":true}}',
        b'{"stream":"x@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"0","T":1,"m":true}}',
        b'{"stream":"x@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":-4,"p":"1","q":"1","T":1,"m":true}}',
        b'{"stream":"x@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","p":"1","q":"1","T":1,"m":true}}',
        b'{"stream":"x@trade","data":',
        b"\xff\xfe",
        b"",
    ],
)
def test_malformed_trades_raise_parse_error(adapter: BinanceAdapter, bad: bytes) -> None:
    with pytest.raises(ParseError):
        adapter.parse(bad, RECV)


def test_rest_historical_trades_every_field(adapter: BinanceAdapter) -> None:
    (t,) = adapter.parse_rest_trades(
        "BNBBTC", sample_raw("binance-rest-historicaltrades.json"), RECV
    )
    assert (t.exchange, t.symbol, t.canonical_symbol, t.trade_id) == (
        "binance",
        "BNBBTC",
        "BNB/BTC",
        28457,
    )
    assert str(t.price) == "4.00000100" and str(t.amount) == "12.00000000"
    assert t.taker_side == "sell" and t.venue_side == "true"
    assert t.ts_event == 1499865549590 * 1_000_000 and t.ts_recv == RECV
    assert b'"id": 28457' in t.raw


def test_listing_overrides_the_suffix_split(adapter: BinanceAdapter) -> None:
    from k2.exchanges.base import Listing

    adapter.use_listing(Listing({"WBTCBTC": "WBTC/BTC"}))
    assert adapter.canonical("WBTCBTC") == "WBTC/BTC"


@pytest.mark.parametrize(
    ("symbol", "canonical"),
    [
        ("BTCUSDT", "BTC/USDT"),
        ("ETHBTC", "ETH/BTC"),
        ("BTCFDUSD", "BTC/FDUSD"),
        ("DOGEEUR", "DOGE/EUR"),
    ],
)
def test_split_symbol(symbol: str, canonical: str) -> None:
    assert split_symbol(symbol) == canonical


def test_stream_url_asks_for_microseconds(adapter: BinanceAdapter) -> None:
    url = adapter.ws_url("wss://stream.binance.com:9443/", ["BTCUSDT", "ETHUSDT"])
    assert (
        url
        == "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade&timeUnit=MICROSECOND"
    )
    assert adapter.subscribe_messages(["BTCUSDT"]) == []
