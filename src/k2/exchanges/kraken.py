"""Kraken spot WebSocket v2 `trade` channel, REST `/0/public/Trades` for backfill.

Docs: https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/trade (trade, snapshot,
`trade_id` "a sequence number, unique per book"), .../spot-websocket-v2/heartbeat, and
https://docs.kraken.com/api/docs/rest-api/get-recent-trades (REST `since`, `last`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

import msgspec

from k2.errors import ParseError, RateLimited, VenueRejected, VenueRequestError
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

NAME = "kraken"
# v2 `side` is "the side of the taker order": no inversion. Side text -> (taker side, venue's side).
_SIDES = {"buy": (BUY, "buy"), "sell": (SELL, "sell")}
_TRADE_TYPES = ("snapshot", "update")
_REST_SIDES = {"b": BUY, "s": SELL}  # REST Trades: the taker's side as b/s


class _Envelope(msgspec.Struct, gc=False):
    # gc=False: one per message (or trade), and nothing in it can point back at it.
    channel: str | None = None
    type: str | None = None
    data: list[msgspec.Raw] | None = None
    method: str | None = None
    success: bool | None = None
    error: str | None = None


class _Trade(msgspec.Struct, gc=False):
    symbol: str
    side: str
    price: Decimal  # a JSON number on the wire: decoded from its text, never via float
    qty: Decimal
    trade_id: int
    timestamp: str
    ord_type: str = ""


class _FastTrade(msgspec.Struct, gc=False):
    # The hot path's view of a trade: the price as the JSON number's text, for the price cache.
    # Whatever this cannot decode goes to `_trade`, whose `_Trade` says what is wrong.
    symbol: str
    side: str
    price: msgspec.Raw
    qty: Decimal
    trade_id: int
    timestamp: str
    ord_type: str = ""  # not kept, but `_Trade` checks it is text


class _RestRow(msgspec.Struct, array_like=True):
    price: Decimal
    volume: Decimal
    time: Decimal  # seconds as a JSON number with sub-µs float noise: rounded to µs
    side: str
    ord_type: str
    misc: str
    trade_id: int


class _RestResponse(msgspec.Struct):
    error: list[str]
    result: dict[str, msgspec.Raw] | None = None


class _Pair(msgspec.Struct):
    altname: str
    wsname: str = ""
    base: str = ""
    quote: str = ""
    status: str = "online"


_decode_envelope = msgspec.json.Decoder(_Envelope)
_decode_trade = msgspec.json.Decoder(_Trade)
_decode_fast_trade = msgspec.json.Decoder(_FastTrade)
_decode_response = msgspec.json.Decoder(_RestResponse)
_decode_rows = msgspec.json.Decoder(list[msgspec.Raw])
_decode_row = msgspec.json.Decoder(_RestRow)
_decode_pair = msgspec.json.Decoder(_Pair)
_MICRO = Decimal("0.000001")


def _canonical_v2(symbol: str) -> str:
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise ParseError(f"Kraken v2 symbol must be BASE/QUOTE, got {symbol!r}", symbol)
    return canonical_pair(base, quote)


def rest_pair_guess(symbol: str) -> str:
    """Return the REST pair name for a v2 symbol when AssetPairs is unreachable
    (BTC/USD -> XBTUSD)."""
    legacy = {"BTC": "XBT", "DOGE": "XDG"}
    base, _, quote = symbol.partition("/")
    return legacy.get(base, base) + legacy.get(quote, quote)


def check_response(body: bytes) -> dict[str, msgspec.Raw]:
    """Return the `result` of a Kraken REST body, raising the right error for its `error` list."""
    try:
        resp = _decode_response.decode(body)
    except DECODE_ERRORS as err:
        raise ParseError(f"unexpected Kraken REST response: {err}", body) from None
    # https://support.kraken.com/articles/206548367 : errors arrive with HTTP 200 in `error`.
    for error in resp.error:
        if error.startswith(("EAPI:Rate limit", "EService:Throttled")):
            raise RateLimited(f"kraken: {error}", retry_after=2.0)
        if error.startswith(("EService:", "EGeneral:Temporary")):
            raise VenueRequestError(f"kraken: {error}")
        raise VenueRejected(f"kraken: {error}")
    if resp.result is None:
        raise ParseError("Kraken REST response without result", body)
    return resp.result


class KrakenAdapter(SymbolNames):
    name = NAME
    split_symbol = staticmethod(_canonical_v2)
    docs_url = "https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/trade"
    default_ws_url = "wss://ws.kraken.com/v2"
    default_rest_url = "https://api.kraken.com"
    contiguous_ids = True  # "Trade identifier is a sequence number, unique per book."
    max_id_jump = 5_000_000  # XBT/USD, Kraken's busiest book, prints well under a million a day
    heartbeat_timeout_s: float | None = 10.0  # heartbeats arrive ~1/s when nothing else is sent
    max_connection_age_s: float | None = None
    # "Calling the public endpoints at a frequency of 1 per second (or less) would remain within
    # the rate limits" (support.kraken.com/articles/206548367).
    rest_policy = RestPolicy(requests_per_second=1.0, burst=2)
    page_limit = 1000

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)
        self._rest_pair: dict[str, str] = {}
        self._prices = DecimalCache()  # price text as sent -> Decimal, validated when first seen

    def ws_url(self, base_url: str, symbols: Sequence[str]) -> str:
        return base_url

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]:
        # `snapshot` defaults differ between doc versions: always send it explicitly.
        msg = {
            "method": "subscribe",
            "params": {"channel": "trade", "symbol": list(symbols), "snapshot": True},
        }
        return [msgspec.json.encode(msg).decode()]

    def parse(self, raw: bytes, recv_ns: int) -> Parsed:
        try:
            env = _decode_envelope.decode(raw)
        except DECODE_ERRORS as err:
            raise ParseError(f"unexpected Kraken message: {err}", raw) from None
        if env.channel == "trade":
            if env.type not in _TRADE_TYPES or env.data is None:
                raise ParseError(f"unexpected trade message type {env.type!r}", raw)
            trades: list[Trade] = []
            if self._trades(env.data, recv_ns, trades):
                return Parsed(trades)
            # Something in it is off: trade by trade, so its good trades still count.
            rejected: list[ParseError] = []
            collect_trades(env.data, lambda item: self._trade(item, recv_ns), trades, rejected)
            if rejected and not trades:
                raise rejected[0]
            return Parsed(trades, rejected=tuple(rejected))
        if env.channel == "heartbeat":
            return HEARTBEAT
        if env.method == "pong":
            return HEARTBEAT
        if env.success is False or env.error:
            return Parsed(signal=Signal.ERROR, detail=f"{env.method}: {env.error}")
        if env.method is not None and env.success:
            return SUBSCRIBED if env.method == "subscribe" else INFO
        if env.channel == "status":
            return INFO
        raise ParseError(f"unexpected Kraken message (channel {env.channel!r})", raw)

    def _trades(self, items: list[msgspec.Raw], recv_ns: int, out: list[Trade]) -> bool:
        """The hot path: add every trade of a message to `out` and return True, or add none and
        return False if any needs `_trade` to say what is wrong. It accepts exactly what `_trade`
        accepts: the same checks (limits.trade_problem), the price validated by its cache."""
        names, decode, sides, limits, prices = (
            self._names,
            _decode_fast_trade.decode,
            _SIDES,
            self.limits,
            self._prices,
        )
        start = len(out)
        try:
            for item in items:
                t = decode(item)
                side, venue_side = sides[t.side]
                symbol, canonical = names.get(t.symbol) or self.names(t.symbol)
                trade = Trade(
                    NAME,
                    symbol,
                    canonical,
                    t.trade_id,
                    prices[bytes(t.price)],
                    t.qty,
                    side,
                    rfc3339_to_ns(t.timestamp),
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
            raise ParseError(f"bad Kraken trade: {err}", raw) from None
        sides = _SIDES.get(t.side)
        if sides is None:
            raise ParseError(f"unknown side {t.side!r}", raw)
        try:
            symbol, canonical = self.names(t.symbol)
            ts_event = rfc3339_to_ns(t.timestamp)
        except ParseError as err:
            raise ParseError(err.reason, raw) from None
        return checked(
            Trade(
                NAME,
                symbol,
                canonical,
                t.trade_id,
                t.price,
                t.qty,
                sides[0],
                ts_event,
                recv_ns,
                sides[1],
                raw,
            ),
            self.limits,
        )

    async def fetch_listing(self, fetch: Fetch, symbols: Sequence[str]) -> Listing:
        result = check_response(await fetch("/0/public/AssetPairs"))
        listed: dict[str, str] = {}
        not_trading: dict[str, str] = {}
        for raw in result.values():
            try:
                pair = _decode_pair.decode(raw)
            except DECODE_ERRORS as err:
                raise ParseError(f"unexpected AssetPairs entry: {err}", bytes(raw)) from None
            if not pair.wsname:
                continue
            v2 = _canonical_v2(pair.wsname)  # wsname is the v1 name (XBT/USD)
            listed[v2] = v2
            self._rest_pair[v2] = pair.altname
            if pair.status != "online":
                not_trading[v2] = pair.status
        return Listing(listed, not_trading)

    def parse_rest_trades(
        self, symbol: str, body: bytes, recv_ns: int, rejected: list[ParseError] | None = None
    ) -> tuple[list[Trade], int]:
        """Parse a /0/public/Trades body into trades and the `last` cursor (ns); rows that fail
        validation go to `rejected` (or raise, without it)."""
        result = check_response(body)
        trades: list[Trade] = []
        last = 0
        canonical = self.canonical(symbol)
        for key, value in result.items():
            try:
                if key == "last":
                    last = int(msgspec.json.decode(value, type=str | int))
                    continue
                rows = _decode_rows.decode(value)
            except (*DECODE_ERRORS, ValueError) as err:
                raise ParseError(f"unexpected Kraken Trades response: {err}", body) from None
            collect_trades(
                rows,
                lambda row: self._rest_trade(symbol, canonical, bytes(row), recv_ns),
                trades,
                rejected,
            )
        return trades, last

    def _rest_trade(self, symbol: str, canonical: str, raw: bytes, recv_ns: int) -> Trade:
        try:
            r = _decode_row.decode(raw)
        except DECODE_ERRORS as err:
            raise ParseError(f"bad Kraken Trades row: {err}", raw) from None
        side = _REST_SIDES.get(r.side)
        if side is None:
            raise ParseError(f"unknown REST side {r.side!r}", raw)
        # Seconds as a JSON number: bounded before it becomes an int
        # (1e999999999 is a valid decimal).
        if not r.time.is_finite() or r.time.adjusted() > 11:
            raise ParseError(f"REST trade time must be a number of seconds, got {r.time}", raw)
        micros = (r.time / _MICRO).to_integral_value(ROUND_HALF_EVEN)
        return checked(
            Trade(
                NAME,
                symbol,
                canonical,
                parse_trade_id(r.trade_id, raw),
                r.price,
                r.volume,
                side,
                int(micros) * 1000,
                recv_ns,
                r.side,
                raw,
            ),
            self.limits,
        )

    async def backfill(
        self, fetch: Fetch, request: BackfillRequest, recv_ns: Callable[[], int]
    ) -> Backfill:
        """Fetch ids `first_id..last_id` by walking `since` forward from the trade
        before the hole."""
        pair = self._rest_pair.get(request.symbol) or rest_pair_guess(request.symbol)
        since = request.ts_from - 1_000 if request.ts_from else max(request.ts_to - 60 * 10**9, 0)
        out: list[Trade] = []
        rejected: list[ParseError] = []
        while True:
            body = await fetch(
                "/0/public/Trades", {"pair": pair, "since": since, "count": self.page_limit}
            )
            page, last = self.parse_rest_trades(request.symbol, body, recv_ns(), rejected)
            out.extend(t for t in page if request.first_id <= t.trade_id <= request.last_id)
            if not page or last <= since or page[-1].trade_id >= request.last_id:
                return Backfill(out, rejected=rejected)
            since = last
