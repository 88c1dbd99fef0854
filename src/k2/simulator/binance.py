"""Simulated Binance spot: combined `@trade` streams and the REST endpoints K2 uses."""

from __future__ import annotations

import time

import orjson
from websockets.datastructures import Headers

from k2.simulator.market import SimTrade, SymbolMarket, fmt_fixed
from k2.simulator.server import HttpReply, SimConnection, VenueServer, json_reply

QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "USD")
_GARBAGE = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":',  # truncated
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}}',
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"-5","q":"1","T":1,"m":true}}',
    b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT"}}',
    b"\xff\xfe not json",
    b"[]",
)


def split(symbol: str) -> tuple[str, str]:
    for quote in QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return symbol[:-3], symbol[-3:]


def text(units: int, decimals: int) -> str:
    """Binance prints prices and quantities with 8 decimals ("4.00000100")."""
    return fmt_fixed(units * 10 ** (8 - decimals), 8)


def quote_text(market: SymbolMarket, t: SimTrade) -> str:
    units = t.price * 10 ** (8 - market.price_decimals) * t.amount  # exact: 16 decimals
    return fmt_fixed(units, 16).rstrip("0").rstrip(".")


class BinanceSim(VenueServer):
    name = "binance"
    batching = False  # one trade per message
    cuts_connections = True  # "A single connection ... is only valid for 24 hours"
    first_id = 5_000_000_000
    text = staticmethod(text)
    split = staticmethod(split)
    stall_supported = False  # no app heartbeat: a silent Binance stream is a quiet market

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._weight_minute = 0
        self._weight = 0
        self._garbage_i = 0

    async def on_open(self, conn: SimConnection) -> bool:
        streams = conn.params.get("streams", "")
        for stream in streams.split("/"):
            name, _, kind = stream.partition("@")
            if kind == "trade" and name.upper() in self.markets:
                conn.symbols.add(name.upper())
        conn.subscribed.set()
        return True

    async def on_client_message(self, conn: SimConnection, text: str) -> None:
        try:
            msg = orjson.loads(text)
            method, params, rid = msg["method"], msg.get("params", []), msg.get("id")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await conn.ws.send('{"code":3,"msg":"Invalid JSON: expected method"}')
            return
        for stream in params:
            name, _, kind = str(stream).partition("@")
            if kind == "trade" and name.upper() in self.markets:
                (conn.symbols.add if method == "SUBSCRIBE" else conn.symbols.discard)(name.upper())
        await conn.ws.send(orjson.dumps({"result": None, "id": rid}), text=True)

    def encode(self, conn: SimConnection, market: SymbolMarket, trades: list[SimTrade]) -> bytes:
        (message,) = self.encode_each(conn, market, trades)
        return message

    def encode_each(
        self, conn: SimConnection, market: SymbolMarket, trades: list[SimTrade]
    ) -> list[bytes]:
        micro = conn.params.get("timeUnit", "").upper() == "MICROSECOND"
        div = 1000 if micro else 1_000_000
        sym = market.symbol
        head = (
            f'{{"stream":"{sym.lower()}@trade","data":{{"e":"trade",'
            f'"E":{time.time_ns() // div},"s":"{sym}","t":'
        )
        return [
            f'{head}{t.trade_id},"p":"{t.price_text}","q":"{t.amount_text}",'
            f'"T":{t.ts_ns // div},"m":{"false" if t.taker_buy else "true"},"M":true}}}}'.encode()
            for t in trades
        ]

    def garbage(self, market: SymbolMarket) -> bytes:
        self._garbage_i += 1
        return _GARBAGE[self._garbage_i % len(_GARBAGE)]

    async def planned_cut(self, conn: SimConnection) -> None:
        self.conns.discard(conn)
        await conn.ws.close(1000, "connection age limit")

    async def shutdown_notice(self, conn: SimConnection) -> None:
        event = {
            "stream": "!serverShutdown",
            "data": {"e": "serverShutdown", "E": time.time_ns() // 1_000_000},
        }
        await conn.ws.send(orjson.dumps(event), text=True)
        self.close_later(conn, 3.0, 1001, "server shutdown")

    def rate_limited(self) -> HttpReply:
        return json_reply({"code": -1003, "msg": "Too many requests."}, 429, {"Retry-After": "1"})

    def _weigh(self, weight: int) -> dict[str, str]:
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight = minute, 0
        self._weight += weight
        return {"X-MBX-USED-WEIGHT-1M": str(self._weight)}

    def rest(self, path: str, query: list[tuple[str, str]], headers: Headers) -> HttpReply:
        q = dict(query)
        if path == "/api/v3/exchangeInfo":
            symbols = []
            for sym in self.markets:
                base, quote = split(sym)
                symbols.append(
                    {"symbol": sym, "status": "TRADING", "baseAsset": base, "quoteAsset": quote}
                )
            return json_reply(
                {"timezone": "UTC", "serverTime": time.time_ns() // 10**6, "symbols": symbols},
                headers=self._weigh(20),
            )
        if path in ("/api/v3/historicalTrades", "/api/v3/trades"):
            weight = self._weigh(25)
            market = self.markets.get(q.get("symbol", ""))
            if market is None:
                return json_reply({"code": -1121, "msg": "Invalid symbol."}, 400, weight)
            limit = min(int(q.get("limit", 500)), 1000)
            if "fromId" in q and path.endswith("historicalTrades"):
                rows = market.from_id(int(q["fromId"]), limit)
            else:
                rows = market.recent(limit)
            micro = headers.get("X-MBX-TIME-UNIT", "").upper() == "MICROSECOND"
            div = 1000 if micro else 1_000_000
            body = [
                {
                    "id": t.trade_id,
                    "price": t.price_text,
                    "qty": t.amount_text,
                    "quoteQty": quote_text(market, t),
                    "time": t.ts_ns // div,
                    "isBuyerMaker": not t.taker_buy,
                    "isBestMatch": True,
                }
                for t in rows
            ]
            return json_reply(body, headers=weight)
        return json_reply({"code": -1, "msg": f"unknown endpoint {path}"}, 404)
