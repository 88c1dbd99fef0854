"""Coinbase Advanced Trade WebSocket `market_trades` + `heartbeats`; REST market trades by window.

Docs: https://docs.cdp.coinbase.com/coinbase-app/advanced-trade-apis/websocket/websocket-channels
(`market_trades`: "side ... refers to the makers side"; `heartbeats`), .../websocket-overview
(`sequence_num`: a jump means a dropped message) and
https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/public/get-public-market-trades.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import msgspec

from k2.errors import ParseError
from k2.exchanges.base import (
    DECODE_ERRORS,
    HEARTBEAT,
    INFO,
    SUBSCRIBED,
    Backfill,
    BackfillRequest,
    DecimalCache,
    Fetch,
    Listing,
    Parsed,
    RestPolicy,
    Signal,
    SymbolNames,
    canonical_pair,
    checked,
    collect_trades,
    parse_trade_id,
)
from k2.exchanges.limits import DEFAULT_LIMITS, Limits, trade_problem
from k2.records import BUY, SELL, Trade
from k2.timeutil import rfc3339_to_ns

NAME = "coinbase"
# `side` is the maker's side: a resting SELL hit by an aggressive buyer prints side=SELL.
# Side text -> (taker side, the venue's side as sent).
_TAKER_FROM_MAKER = {"BUY": (SELL, "BUY"), "SELL": (BUY, "SELL")}
_EVENT_TYPES = ("snapshot", "update")
_NS = 1_000_000_000


class _Envelope(msgspec.Struct, gc=False):
    # gc=False: one per message (or trade), and nothing in it can point back at it.
    channel: str | None = None
    sequence_num: int | None = None
    events: list[msgspec.Raw] | None = None
    type: str | None = None
    message: str | None = None


class _TradesEvent(msgspec.Struct, gc=False):
    type: str
    trades: list[msgspec.Raw]


class _Trade(msgspec.Struct, gc=False):
    trade_id: str
    product_id: str
    price: Decimal
    size: Decimal
    side: str
    time: str


class _FastTrade(msgspec.Struct, gc=False):
    # The hot path's view of a trade: the price as text, for the price cache. Whatever this cannot
    # decode goes to `_trade`, whose `_Trade` says what is wrong.
    trade_id: str
    product_id: str
    price: str
    size: Decimal
    side: str
    time: str


class _TradesMessage(msgspec.Struct, gc=False):
    # The hot path's view of a message: market_trades with its events in one decode. Anything else
    # (heartbeats, subscriptions, errors, a malformed event) fails it and takes `_Envelope`'s path.
    channel: str
    events: list[_TradesEvent]
    sequence_num: int | None = None


class _Ticker(msgspec.Struct):
    trades: list[msgspec.Raw]


class _Product(msgspec.Struct):
    product_id: str
    base_currency_id: str = ""
    quote_currency_id: str = ""
    status: str = "online"
    trading_disabled: bool = False


class _Products(msgspec.Struct):
    products: list[_Product]


_decode_envelope = msgspec.json.Decoder(_Envelope)
_decode_event = msgspec.json.Decoder(_TradesEvent)
_decode_trade = msgspec.json.Decoder(_Trade)
_decode_fast_trade = msgspec.json.Decoder(_FastTrade)
_decode_trades_message = msgspec.json.Decoder(_TradesMessage)
_decode_ticker = msgspec.json.Decoder(_Ticker)
_decode_products = msgspec.json.Decoder(_Products)


def _canonical(product_id: str) -> str:
    base, sep, quote = product_id.partition("-")
    if not sep or not base or not quote:
        raise ParseError(f"Coinbase product id must be BASE-QUOTE, got {product_id!r}", product_id)
    return canonical_pair(base, quote)


class CoinbaseAdapter(SymbolNames):
    name = NAME
    split_symbol = staticmethod(_canonical)
    docs_url = "https://docs.cdp.coinbase.com/coinbase-app/advanced-trade-apis/websocket/websocket-channels"
    default_ws_url = "wss://advanced-trade-ws.coinbase.com"
    default_rest_url = "https://api.coinbase.com"
    # Trade ids are not documented as contiguous: dedupe by id, repair by time window.
    contiguous_ids = False
    max_id_jump = 20_000_000  # BTC-USD prints about a million trades on a heavy day; ids may skip
    heartbeat_timeout_s: float | None = 10.0  # the heartbeats channel ticks every second
    max_connection_age_s: float | None = None
    rest_policy = RestPolicy(requests_per_second=8.0, burst=8)  # public REST ~10 req/s per IP
    page_limit = 1000

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._prices = DecimalCache()  # price text -> Decimal, validated when first seen

    def ws_url(self, base_url: str, symbols: Sequence[str]) -> str:
        return base_url

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        # One channel per subscribe message; heartbeats keep quiet subscriptions open.
        trades = {"type": "subscribe", "product_ids": list(symbols), "channel": "market_trades"}
        beats = {"type": "subscribe", "channel": "heartbeats"}
        return [msgspec.json.encode(trades).decode(), msgspec.json.encode(beats).decode()]

    def parse(self, raw: bytes, recv_ns: int) -> Parsed:
        try:
            msg = _decode_trades_message.decode(raw)
        except DECODE_ERRORS:
            return self._parse_other(raw, recv_ns)
        if msg.channel != "market_trades":
            return self._parse_other(raw, recv_ns)
        trades: list[Trade] = []
        for ev in msg.events:
            if ev.type not in _EVENT_TYPES or not self._trades(ev.trades, recv_ns, trades):
                return self._parse_other(raw, recv_ns)  # it says what is wrong
        return Parsed(trades, sequence=msg.sequence_num)

    def _parse_other(self, raw: bytes, recv_ns: int) -> Parsed:
        try:
            env = _decode_envelope.decode(raw)
        except DECODE_ERRORS as err:
            raise ParseError(f"unexpected Coinbase message: {err}", raw) from None
        if env.channel == "market_trades":
            if env.events is None:
                raise ParseError("market_trades message without events", raw)
            trades: list[Trade] = []
            rejected: list[ParseError] = []
            for event in env.events:
                try:
                    ev = _decode_event.decode(event)
                except DECODE_ERRORS as err:
                    raise ParseError(f"bad market_trades event: {err}", raw) from None
                if ev.type not in _EVENT_TYPES:
                    raise ParseError(f"unexpected market_trades event type {ev.type!r}", raw)
                if not self._trades(ev.trades, recv_ns, trades):
                    # Something in it is off: trade by trade, so its good trades still count.
                    collect_trades(
                        ev.trades, lambda item: self._trade(item, recv_ns), trades, rejected
                    )
            if rejected and not trades:
                raise rejected[0]
            return Parsed(trades, sequence=env.sequence_num, rejected=tuple(rejected))
        if env.channel == "heartbeats":
            return (
                HEARTBEAT
                if env.sequence_num is None
                else Parsed(signal=Signal.HEARTBEAT, sequence=env.sequence_num)
            )
        if env.channel == "subscriptions":
            return (
                SUBSCRIBED
                if env.sequence_num is None
                else Parsed(signal=Signal.SUBSCRIBED, sequence=env.sequence_num)
            )
        if env.type == "error" or env.channel == "error":
            return Parsed(signal=Signal.ERROR, detail=env.message or raw.decode("utf-8", "replace"))
        if env.channel is not None and env.events is not None:
            return (
                INFO
                if env.sequence_num is None
                else Parsed(signal=Signal.INFO, sequence=env.sequence_num)
            )
        raise ParseError(f"unexpected Coinbase message (channel {env.channel!r})", raw)

    def _trades(self, items: list[msgspec.Raw], recv_ns: int, out: list[Trade]) -> bool:
        """The hot path: add every trade of an event to `out` and return True, or add none and
        return False if any needs `_trade` to say what is wrong. It accepts exactly what `_trade`
        accepts: the same checks (limits.trade_problem), the price validated by its cache."""
        names, decode, sides, limits, prices = (
            self._names,
            _decode_fast_trade.decode,
            _TAKER_FROM_MAKER,
            self.limits,
            self._prices,
        )
        start = len(out)
        try:
            for item in items:
                t = decode(item)
                taker, venue_side = sides[t.side]
                symbol, canonical = names.get(t.product_id) or self.names(t.product_id)
                trade = Trade(
                    NAME,
                    symbol,
                    canonical,
                    parse_trade_id(t.trade_id, b""),
                    prices[t.price],
                    t.size,
                    taker,
                    rfc3339_to_ns(t.time),
                    recv_ns,
                    venue_side,
                    bytes(item),
                )
                if trade_problem(trade, limits, price_checked=True) is not None:
                    break
                out.append(trade)
            else:
                return True
        except (ParseError, KeyError, *DECODE_ERRORS):
            pass
        del out[start:]
        return False

    def _trade(self, item: msgspec.Raw, recv_ns: int) -> Trade:
        raw = bytes(item)
        try:
            t = _decode_trade.decode(raw)
        except DECODE_ERRORS as err:
            raise ParseError(f"bad Coinbase trade: {err}", raw) from None
        sides = _TAKER_FROM_MAKER.get(t.side)
        if sides is None:
            raise ParseError(f"unknown side {t.side!r}", raw)
        try:
            symbol, canonical = self.names(t.product_id)
            ts_event = rfc3339_to_ns(t.time)
        except ParseError as err:
            raise ParseError(err.reason, raw) from None
        return checked(
            Trade(
                NAME,
                symbol,
                canonical,
                parse_trade_id(t.trade_id, raw),
                t.price,
                t.size,
                sides[0],
                ts_event,
                recv_ns,
                sides[1],
                raw,
            ),
            self.limits,
        )

    async def fetch_listing(self, fetch: Fetch, symbols: Sequence[str]) -> Listing:
        params = [("product_ids", s) for s in symbols]
        body = await fetch("/api/v3/brokerage/market/products", params)
        try:
            products = _decode_products.decode(body).products
        except DECODE_ERRORS as err:
            raise ParseError(f"unexpected products response: {err}", body) from None
        listed = {
            p.product_id: canonical_pair(p.base_currency_id, p.quote_currency_id)
            if p.base_currency_id and p.quote_currency_id
            else _canonical(p.product_id)
            for p in products
        }
        halted = {
            p.product_id: p.status
            for p in products
            if p.trading_disabled or p.status.lower() != "online"
        }
        return Listing(listed, halted)

    def parse_rest_trades(
        self, body: bytes, recv_ns: int, rejected: list[ParseError] | None = None
    ) -> list[Trade]:
        """Parse a market-trades (ticker) response; REST `side` is the maker's side too. Rows that
        fail validation go to `rejected` (or raise, without it)."""
        try:
            items = _decode_ticker.decode(body).trades
        except DECODE_ERRORS as err:
            raise ParseError(f"unexpected market trades response: {err}", body) from None
        out: list[Trade] = []
        collect_trades(items, lambda item: self._trade(item, recv_ns), out, rejected)
        return out

    async def backfill(
        self, fetch: Fetch, request: BackfillRequest, recv_ns: Callable[[], int]
    ) -> Backfill:
        """Fetch trades in `ts_from..ts_to`, newest first, paging `end` backwards (UNIX seconds)."""
        start = request.ts_from // _NS
        end = -(-request.ts_to // _NS)  # ceil: the window's last second is included
        path = f"/api/v3/brokerage/market/products/{request.symbol}/ticker"
        out: list[Trade] = []
        rejected: list[ParseError] = []
        while True:
            body = await fetch(path, {"limit": self.page_limit, "start": start, "end": end})
            before = len(rejected)
            page = self.parse_rest_trades(body, recv_ns(), rejected)
            out.extend(t for t in page if t.symbol == request.symbol)
            if len(page) + len(rejected) - before < self.page_limit or not page:
                return Backfill(out, complete=not rejected, rejected=rejected)
            oldest = min(t.ts_event for t in page) // _NS
            if oldest <= start:
                return Backfill(out, complete=not rejected, rejected=rejected)
            if oldest >= end:
                # More than a page of trades inside one second: seconds cannot page further.
                return Backfill(out, complete=False, rejected=rejected)
            end = oldest
