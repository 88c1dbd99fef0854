"""Simulated Kraken spot WebSocket v2 (`trade`, heartbeat, ping) and REST AssetPairs/Trades."""

from __future__ import annotations

import time

import orjson
from websockets.datastructures import Headers

from k2.simulator.market import SimTrade, SymbolMarket
from k2.simulator.server import HttpReply, SimConnection, VenueServer, json_reply
from k2.timeutil import ns_to_rfc3339

SNAPSHOT_TRADES = 50  # "The snapshot reflects the most recent 50 trades."
_LEGACY = {"BTC": "XBT", "DOGE": "XDG"}
_X_ASSETS = {"XBT", "ETH", "LTC", "XRP", "XDG", "XLM", "ETC", "XMR", "ZEC"}
_FIAT = {"USD", "EUR", "GBP", "JPY", "CAD"}
_GARBAGE = (
    b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":',
    (
        b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sideways",'
        b'"price":1,"qty":1,"ord_type":"limit","trade_id":1,'
        b'"timestamp":"2026-01-01T00:00:00.000000Z"}]}'
    ),
    (
        b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":1,'
        b'"qty":1,"ord_type":"limit","trade_id":1,"timestamp":"yesterday"}]}'
    ),
    b'{"channel":"book","type":"update","data":[]}',
    b'{"channel":"trade","type":"sideways","data":[]}',
)


def utc_us(ns: int) -> str:
    return ns_to_rfc3339(ns)[:26] + "Z"  # RFC 3339 with microseconds, as Kraken prints


def legacy(symbol: str) -> tuple[str, str, str]:
    """Return (AssetPairs key, altname, wsname) for a v2 symbol, in Kraken's legacy codes."""
    base, _, quote = symbol.partition("/")
    base, quote = _LEGACY.get(base, base), _LEGACY.get(quote, quote)
    key = f"X{base}Z{quote}" if base in _X_ASSETS and quote in _FIAT else f"{base}{quote}"
    return key, f"{base}{quote}", f"{base}/{quote}"


def trade_json(market: SymbolMarket, t: SimTrade) -> str:
    return (
        f'{{"symbol":"{market.symbol}","side":"{"buy" if t.taker_buy else "sell"}",'
        f'"price":{t.price_text},"qty":{t.amount_text},'
        f'"ord_type":"{"market" if t.trade_id % 3 else "limit"}","trade_id":{t.trade_id},'
        f'"timestamp":"{utc_us(t.ts_ns)}"}}'
    )


class KrakenSim(VenueServer):
    name = "kraken"
    ws_path = "/v2"
    first_id = 80_000_000  # text: the default (JSON numbers without trailing zeros)
    has_app_heartbeat = True  # {"channel":"heartbeat"} about once a second when idle

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._by_rest_name: dict[str, str] = {}
        for symbol in self.markets:
            key, alt, ws = legacy(symbol)
            for name in (key, alt, ws, symbol, symbol.replace("/", "")):
                self._by_rest_name[name] = symbol
        self._garbage_i = 0

    async def on_open(self, conn: SimConnection) -> bool:
        status = {
            "channel": "status",
            "type": "update",
            "data": [
                {
                    "api_version": "v2",
                    "connection_id": id(conn) % 10**12,
                    "system": "online",
                    "version": "2.0.10",
                }
            ],
        }
        await conn.ws.send(orjson.dumps(status), text=True)
        return True

    async def on_client_message(self, conn: SimConnection, text: str) -> None:
        now = utc_us(time.time_ns())
        try:
            msg = orjson.loads(text)
            method = msg["method"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await conn.ws.send(
                orjson.dumps({"error": "Malformed request", "success": False}), text=True
            )
            return
        req = {"req_id": msg["req_id"]} if "req_id" in msg else {}
        if method == "ping":
            await conn.ws.send(
                orjson.dumps({"method": "pong", **req, "time_in": now, "time_out": now}), text=True
            )
            return
        params = msg.get("params", {})
        if method not in ("subscribe", "unsubscribe") or params.get("channel") != "trade":
            await conn.ws.send(
                orjson.dumps(
                    {"error": "Unsupported request", "method": method, "success": False, **req}
                ),
                text=True,
            )
            return
        for symbol in params.get("symbol", []):
            if symbol not in self.markets:
                await conn.ws.send(
                    orjson.dumps(
                        {
                            "error": f"Currency pair not supported {symbol}",
                            "method": method,
                            "success": False,
                            "symbol": symbol,
                            "time_in": now,
                            "time_out": now,
                            **req,
                        }
                    ),
                    text=True,
                )
                continue
            ack = {
                "method": method,
                "result": {
                    "channel": "trade",
                    "snapshot": bool(params.get("snapshot")),
                    "symbol": symbol,
                },
                "success": True,
                "time_in": now,
                "time_out": now,
                **req,
            }
            await conn.ws.send(orjson.dumps(ack), text=True)
            if method == "unsubscribe":
                conn.symbols.discard(symbol)
                continue
            market = self.markets[symbol]
            if params.get("snapshot"):
                recent = market.recent(SNAPSHOT_TRADES)
                data = ",".join(trade_json(market, t) for t in recent)
                await conn.ws.send(
                    f'{{"channel":"trade","type":"snapshot","data":[{data}]}}', text=True
                )
            conn.symbols.add(symbol)
        conn.subscribed.set()

    def encode(self, conn: SimConnection, market: SymbolMarket, trades: list[SimTrade]) -> bytes:
        data = ",".join(trade_json(market, t) for t in trades)
        return f'{{"channel":"trade","type":"update","data":[{data}]}}'.encode()

    def heartbeat(self, conn: SimConnection) -> bytes | None:
        return b'{"channel":"heartbeat"}'

    def garbage(self, market: SymbolMarket) -> bytes:
        self._garbage_i += 1
        return _GARBAGE[self._garbage_i % len(_GARBAGE)]

    def rate_limited(self) -> HttpReply:
        # Kraken answers 200 with an error.
        return json_reply({"error": ["EAPI:Rate limit exceeded"]})

    def rest(self, path: str, query: list[tuple[str, str]], headers: Headers) -> HttpReply:
        q = dict(query)
        if path == "/0/public/AssetPairs":
            result = {}
            for symbol in self.markets:
                key, alt, ws = legacy(symbol)
                base, _, quote = ws.partition("/")
                result[key] = {
                    "altname": alt,
                    "wsname": ws,
                    "base": base,
                    "quote": quote,
                    "status": "online",
                }
            return json_reply({"error": [], "result": result})
        if path == "/0/public/Trades":
            listed = self._by_rest_name.get(q.get("pair", ""))
            if listed is None:
                return json_reply({"error": ["EQuery:Unknown asset pair"]})
            market = self.markets[listed]
            since = int(q.get("since", "0") or 0)
            if since < 10**12:
                since *= 10**9  # seconds form
            count = max(1, min(int(q.get("count", 1000)), 1000))
            rows = market.after_time(since, count)
            body = [
                [
                    t.price_text,
                    t.amount_text,
                    t.ts_ns / 1e9,
                    "b" if t.taker_buy else "s",
                    "m" if t.trade_id % 3 else "l",
                    "",
                    t.trade_id,
                ]
                for t in rows
            ]
            last = str(rows[-1].ts_ns if rows else since)
            return json_reply({"error": [], "result": {legacy(listed)[0]: body, "last": last}})
        return json_reply({"error": ["EGeneral:Unknown method"]}, 404)
