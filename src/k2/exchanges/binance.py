"""Binance spot: raw `<symbol>@trade` streams over one combined connection.

Docs: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (trade streams,
combined streams, `timeUnit`, server shutdown, 24 h limit) and
https://developers.binance.com/docs/binance-spot-api-docs/rest-api (historicalTrades, limits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

import msgspec

from k2.errors import ParseError
from k2.exchanges.base import (
    DECODE_ERRORS,
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
)
from k2.exchanges.limits import DEFAULT_LIMITS, Limits, trade_problem
from k2.records import BUY, SELL, Trade

NAME = "binance"

# Quote assets, longest first, to split a concatenated symbol when the listing is unreachable.
_QUOTES = (
    "FDUSD",
    "USDT",
    "USDC",
    "TUSD",
    "BUSD",
    "USDP",
    "DAI",
    "BTC",
    "ETH",
    "BNB",
    "EUR",
    "TRY",
    "BRL",
    "GBP",
    "JPY",
    "AUD",
    "USD",
    "XRP",
    "TRX",
    "DOGE",
)

_MICROS_THRESHOLD = 10**14  # below: milliseconds (until year 5138); above: microseconds


class _Trade(msgspec.Struct, tag_field="e", tag="trade", gc=False):
    # Only the fields K2 keeps: msgspec skips the others (E event time, M "ignore") for free.
    # gc=False (scalars only, no cycles possible): the collector never scans these per-message
    # objects, which is ~7 % of the parse cost.
    s: str  # symbol
    t: int  # trade id
    p: str  # price (decimal string; made a Decimal through the adapter's price cache)
    q: Decimal  # quantity (decimal string; sizes repeat far less than prices, so no cache)
    T: int  # trade time: ms, or µs with timeUnit=MICROSECOND
    m: bool  # is the buyer the market maker?


_ABSENT = msgspec.Raw(b"")


class _Shutdown(msgspec.Struct, tag_field="e", tag="serverShutdown"):
    pass


class _Combined(msgspec.Struct, gc=False):
    # The fast path: a combined-stream trade. Anything else (serverShutdown included) fails this
    # decode and goes to `_parse_other`, so the common case pays for no union dispatch.
    data: _Trade  # `stream` repeats data.s: not decoded


class _Other(msgspec.Struct):
    # Everything else Binance sends on a market stream connection. `result` and `data` stay raw
    # JSON (empty when absent): msgspec cannot put Raw in a union, so no `| None` here.
    e: str | None = None
    result: msgspec.Raw = _ABSENT  # b"null" = ack of a (un)subscribe; anything else = a reply
    id: int | str | None = None
    code: int | None = None
    msg: str | None = None
    stream: str | None = None
    data: msgspec.Raw = _ABSENT


class _RestTrade(msgspec.Struct):
    id: int
    price: Decimal
    qty: Decimal
    time: int
    isBuyerMaker: bool
    quoteQty: str = ""
    isBestMatch: bool = True


class _SymbolInfo(msgspec.Struct):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_SymbolInfo]


_decode_combined = msgspec.json.Decoder(_Combined)
_decode_other = msgspec.json.Decoder(_Other)
_decode_event = msgspec.json.Decoder(_Trade | _Shutdown)
_decode_rows = msgspec.json.Decoder(list[msgspec.Raw])
_decode_rest_trade = msgspec.json.Decoder(_RestTrade)
_decode_exchange_info = msgspec.json.Decoder(_ExchangeInfo)


def _ns(value: int) -> int:
    # Binance times are ms by default and µs when asked for; tell them apart by magnitude.
    return value * 1_000_000 if value < _MICROS_THRESHOLD else value * 1_000


def split_symbol(symbol: str) -> str:
    """Return BASE/QUOTE for a concatenated Binance symbol by its quote-asset suffix."""
    upper = symbol.upper()
    for quote in _QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return canonical_pair(upper[: -len(quote)], quote)
    raise ParseError(f"cannot split Binance symbol {symbol!r} into base and quote", symbol)


class BinanceAdapter(SymbolNames):
    name = NAME
    split_symbol = staticmethod(split_symbol)
    docs_url = "https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams"
    default_ws_url = "wss://stream.binance.com:9443"
    default_rest_url = "https://api.binance.com"
    # Trade ids are contiguous per symbol in practice (the public archive shows no holes).
    contiguous_ids = True
    # No app heartbeat: the server pings every 20 s; the websocket layer answers and pings too.
    heartbeat_timeout_s: float | None = None
    # "A single connection to stream.binance.com is only valid for 24 hours."
    max_connection_age_s: float | None = 24 * 3600.0
    # BTCUSDT, the busiest spot market, prints a few million trades on a heavy day.
    max_id_jump = 20_000_000
    # REQUEST_WEIGHT 6000/min per IP; historicalTrades weighs 25.
    rest_policy = RestPolicy(
        requests_per_second=10.0,
        burst=10,
        weight_per_minute=6000,
        used_weight_header="x-mbx-used-weight-1m",
    )
    historical_weight = 25
    page_limit = 1000

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._prices = DecimalCache()

    def ws_url(self, base_url: str, symbols: Sequence[str]) -> str:
        streams = "/".join(f"{s.lower()}@trade" for s in symbols)
        return f"{base_url.rstrip('/')}/stream?streams={streams}&timeUnit=MICROSECOND"

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        return []  # the combined-stream URL carries the subscriptions

    def parse(self, raw: bytes, recv_ns: int) -> Parsed | Trade:
        # The hot path of the whole platform: one decode, one Trade, no call that is not needed.
        # A message is one trade here, so the Trade comes back bare (no Parsed around it).
        try:
            t = _decode_combined.decode(raw).data
        except DECODE_ERRORS:
            return self._parse_other(raw, recv_ns)
        return self._trade(t, raw, recv_ns)

    def _trade(self, t: _Trade, raw: bytes, recv_ns: int) -> Trade:
        T = t.T
        try:
            p = self._prices[t.p]  # validated (limits.decimal_problem) when first seen
        except ParseError as err:
            raise ParseError(f"price {err.reason}", raw) from None
        try:
            symbol, canonical = self._names.get(t.s) or self.names(t.s)
        except ParseError as err:  # a symbol K2 did not subscribe to
            raise ParseError(err.reason, raw) from None
        trade = Trade(
            NAME,
            symbol,
            canonical,
            t.t,
            p,
            t.q,
            SELL if t.m else BUY,  # m: buyer is maker => the seller was the aggressor
            T * 1_000_000 if T < _MICROS_THRESHOLD else T * 1_000,  # ms by default, µs when asked
            recv_ns,
            "true" if t.m else "false",
            raw,
        )
        problem = trade_problem(trade, self.limits, price_checked=True)
        if problem is not None:
            raise ParseError(problem, raw)
        return trade

    def _parse_other(self, raw: bytes, recv_ns: int) -> Parsed | Trade:
        try:
            msg = _decode_other.decode(raw)
            if msg.stream is not None and msg.data:
                # A combined frame whose payload failed validation: report the payload's problem.
                inner = _decode_event.decode(msg.data)
            elif msg.e in ("trade", "serverShutdown"):
                inner = _decode_event.decode(raw)  # a raw (non-combined) stream message
            else:
                inner = None
        except DECODE_ERRORS as err:
            raise ParseError(f"unexpected Binance message: {err}", raw) from None
        if type(inner) is _Trade:
            return self._trade(inner, raw, recv_ns)
        if type(inner) is _Shutdown:
            return Parsed(signal=Signal.SHUTDOWN, detail="serverShutdown")
        if msg.code is not None:
            return Parsed(signal=Signal.ERROR, detail=f"code {msg.code}: {msg.msg}")
        if msg.id is not None and msg.result:
            # {"result": null, "id": n} acknowledges a (un)subscribe; other results are replies.
            return SUBSCRIBED if bytes(msg.result) == b"null" else INFO
        if msg.e is not None:
            raise ParseError(f"unexpected Binance event type {msg.e!r}", raw)
        raise ParseError("unexpected Binance message shape", raw)

    async def fetch_listing(self, fetch: Fetch, symbols: Sequence[str]) -> Listing:
        body = await fetch("/api/v3/exchangeInfo", {"permissions": "SPOT"}, weight=20)
        try:
            info = _decode_exchange_info.decode(body)
        except DECODE_ERRORS as err:
            raise ParseError(f"unexpected exchangeInfo response: {err}", body) from None
        listed = {s.symbol: canonical_pair(s.baseAsset, s.quoteAsset) for s in info.symbols}
        halted = {s.symbol: s.status for s in info.symbols if s.status != "TRADING"}
        return Listing(listed, halted)

    def parse_rest_trades(
        self, symbol: str, body: bytes, recv_ns: int, rejected: list[ParseError] | None = None
    ) -> list[Trade]:
        """Parse a /api/v3/historicalTrades response (times in µs when the header asked); rows that
        fail validation go to `rejected` (or raise, without it)."""
        try:
            rows = _decode_rows.decode(body)
        except DECODE_ERRORS as err:
            raise ParseError(f"unexpected historicalTrades response: {err}", body) from None
        canonical = self.canonical(symbol)
        out: list[Trade] = []
        collect_trades(
            rows,
            lambda row: self._rest_trade(symbol, canonical, bytes(row), recv_ns),
            out,
            rejected,
        )
        return out

    def _rest_trade(self, symbol: str, canonical: str, raw: bytes, recv_ns: int) -> Trade:
        try:
            r = _decode_rest_trade.decode(raw)
        except DECODE_ERRORS as err:
            raise ParseError(f"bad historicalTrades row: {err}", raw) from None
        return checked(
            Trade(
                NAME,
                symbol,
                canonical,
                r.id,
                r.price,
                r.qty,
                SELL if r.isBuyerMaker else BUY,
                _ns(r.time),
                recv_ns,
                "true" if r.isBuyerMaker else "false",
                raw,
            ),
            self.limits,
        )

    async def backfill(
        self, fetch: Fetch, request: BackfillRequest, recv_ns: Callable[[], int]
    ) -> Backfill:
        """Fetch ids `first_id..last_id` from /api/v3/historicalTrades, paging by `fromId`."""
        out: list[Trade] = []
        rejected: list[ParseError] = []
        next_id = request.first_id
        while next_id <= request.last_id:
            limit = min(self.page_limit, request.last_id - next_id + 1)
            body = await fetch(
                "/api/v3/historicalTrades",
                {"symbol": request.symbol, "fromId": next_id, "limit": limit},
                weight=self.historical_weight,
                headers={"X-MBX-TIME-UNIT": "MICROSECOND"},
            )
            page = self.parse_rest_trades(request.symbol, body, recv_ns(), rejected)
            page = [t for t in page if next_id <= t.trade_id <= request.last_id]
            if not page:
                break  # the venue has nothing more in this range
            out.extend(page)
            next_id = page[-1].trade_id + 1
        return Backfill(out, rejected=rejected)
