"""Simulated Coinbase Advanced Trade: `market_trades` + `heartbeats`, REST products and ticker."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from websockets.datastructures import Headers

from k2.simulator.market import SimTrade, SymbolMarket
from k2.simulator.server import HttpReply, SimConnection, VenueServer, json_reply
from k2.timeutil import ns_to_rfc3339

SNAPSHOT_TRADES = 50
SUBSCRIBE_DEADLINE_S = 5.0  # "a subscribe must arrive within 5 seconds or you are disconnected"
_TICKER = "/api/v3/brokerage/market/products/"
_GARBAGE = (
    b'{"channel":"market_trades","client_id":"","timestamp":"2026-01-01T00:00:00Z","sequence_num":',
    (
        b'{"channel":"market_trades","client_id":"",'
        b'"events":[{"type":"update","trades":[{"trade_id":"x1",'
        b'"product_id":"BTC-USD","price":"1","size":"1","side":"BUY",'
        b'"time":"2026-01-01T00:00:00Z"}]}]}'
    ),
    (
        b'{"channel":"market_trades","events":[{"type":"update","trades":[{"trade_id":"1",'
        b'"product_id":"BTC-USD","price":"NaN","size":"1","side":"BUY",'
        b'"time":"2026-01-01T00:00:00Z"}]}]}'
    ),
    b'{"channel":"market_trades","events":[{"type":"weird","trades":[]}]}',
    b'"just a string"',
)


def rfc3339_nano(ns: int) -> str:
    """Go's RFC3339Nano: up to 9 fractional digits, trailing zeros trimmed (as Coinbase prints)."""
    text = ns_to_rfc3339(ns)[:-1].rstrip("0").rstrip(".")
    return text + "Z"


def trade_json(market: SymbolMarket, t: SimTrade) -> str:
    maker = "SELL" if t.taker_buy else "BUY"  # `side` is the maker's side
    return (
        f'{{"trade_id":"{t.trade_id}","product_id":"{market.symbol}","price":"{t.price_text}",'
        f'"size":"{t.amount_text}","side":"{maker}","time":"{rfc3339_nano(t.ts_ns)}"}}'
    )


class CoinbaseSim(VenueServer):
    name = "coinbase"
    first_id = 700_000_000  # text: the default (decimal strings without trailing zeros)
    id_step_max = 3  # Coinbase ids are not promised contiguous: let them skip
    drop_whole_message = True  # loss shows as a `sequence_num` jump
    has_app_heartbeat = True

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._garbage_i = 0

    async def on_open(self, conn: SimConnection) -> bool:
        async def deadline() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.subscribed.wait(), SUBSCRIBE_DEADLINE_S)
                return
            with contextlib.suppress(Exception):
                await conn.ws.close(1008, "subscribe within 5 seconds")

        self._tasks.append(asyncio.create_task(deadline()))
        return True

    def _envelope(self, conn: SimConnection, channel: str, events: str) -> str:
        return (
            f'{{"channel":"{channel}","client_id":"","timestamp":"{rfc3339_nano(time.time_ns())}",'
            f'"sequence_num":{conn.next_sequence()},"events":[{events}]}}'
        )

    async def on_client_message(self, conn: SimConnection, text: str) -> None:
        try:
            msg = orjson.loads(text)
            kind, channel = msg["type"], msg["channel"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await conn.ws.send(
                orjson.dumps({"type": "error", "message": "Failed to parse request"}), text=True
            )
            return
        if kind != "subscribe" or channel not in ("market_trades", "heartbeats"):
            await conn.ws.send(
                orjson.dumps({"type": "error", "message": f"unsupported {kind} {channel}"}),
                text=True,
            )
            return
        if channel == "heartbeats":
            conn.params["heartbeats"] = "1"
        else:
            unknown = [p for p in msg.get("product_ids", []) if p not in self.markets]
            if unknown:
                await conn.ws.send(
                    orjson.dumps(
                        {
                            "type": "error",
                            "message": "Failed to subscribe",
                            "reason": f"{unknown[0]} is not a valid product",
                        }
                    ),
                    text=True,
                )
            for product in msg.get("product_ids", []):
                if product in self.markets:
                    conn.symbols.add(product)
        subs = {"market_trades": sorted(conn.symbols)} | (
            {"heartbeats": ["heartbeats"]} if conn.params.get("heartbeats") else {}
        )
        await conn.ws.send(
            self._envelope(conn, "subscriptions", orjson.dumps({"subscriptions": subs}).decode()),
            text=True,
        )
        if channel == "market_trades":
            for product in msg.get("product_ids", []):
                market = self.markets.get(product)
                if market is None:
                    continue
                data = ",".join(
                    trade_json(market, t) for t in reversed(market.recent(SNAPSHOT_TRADES))
                )
                await conn.ws.send(
                    self._envelope(
                        conn, "market_trades", f'{{"type":"snapshot","trades":[{data}]}}'
                    ),
                    text=True,
                )
        conn.subscribed.set()

    def encode(self, conn: SimConnection, market: SymbolMarket, trades: list[SimTrade]) -> bytes:
        # newest first, as Coinbase does
        data = ",".join(trade_json(market, t) for t in reversed(trades))
        return self._envelope(
            conn, "market_trades", f'{{"type":"update","trades":[{data}]}}'
        ).encode()

    def heartbeat(self, conn: SimConnection) -> bytes | None:
        if not conn.params.get("heartbeats"):
            return None
        counter = int(conn.params.get("beats", "0")) + 1
        conn.params["beats"] = str(counter)
        now = time.time_ns()
        current = (
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now // 10**9))
            + f".{now % 10**9:09d} +0000 UTC"
        )
        return self._envelope(
            conn,
            "heartbeats",
            orjson.dumps({"current_time": current, "heartbeat_counter": counter}).decode(),
        ).encode()

    def garbage(self, market: SymbolMarket) -> bytes:
        self._garbage_i += 1
        return _GARBAGE[self._garbage_i % len(_GARBAGE)]

    def rate_limited(self) -> HttpReply:
        return json_reply(
            {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}, 429
        )

    def rest(self, path: str, query: list[tuple[str, str]], headers: Headers) -> HttpReply:
        if path == "/api/v3/brokerage/market/products":
            wanted = [v for k, v in query if k == "product_ids"] or list(self.markets)
            products = []
            for product in wanted:
                if product in self.markets:
                    base, _, quote = product.partition("-")
                    products.append(
                        {
                            "product_id": product,
                            "base_currency_id": base,
                            "quote_currency_id": quote,
                            "status": "online",
                            "trading_disabled": False,
                        }
                    )
            return json_reply({"products": products, "num_products": len(products)})
        if path.startswith(_TICKER) and path.endswith("/ticker"):
            product = path[len(_TICKER) : -len("/ticker")]
            market = self.markets.get(product)
            if market is None:
                return json_reply(
                    {"error": "NOT_FOUND", "message": f"product {product} not found"}, 404
                )
            q = dict(query)
            limit = max(1, min(int(q.get("limit", 100)), 1000))
            start = int(q["start"]) * 10**9 if q.get("start") else 0
            # `end`'s second included
            end = (int(q["end"]) + 1) * 10**9 - 1 if q.get("end") else time.time_ns()
            rows = market.between(start, end)[-limit:]  # the newest `limit` in the window
            data = ",".join(trade_json(market, t) for t in reversed(rows))
            body = f'{{"trades":[{data}],"best_bid":"","best_ask":""}}'.encode()
            return HttpReply(200, body)
        return json_reply({"error": "NOT_FOUND", "message": path}, 404)
