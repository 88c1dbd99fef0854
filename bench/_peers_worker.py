"""The peers' side of bench/peers.py, run by the peers' own interpreter (cryptofeed 3 needs Python
3.13 or newer; K2 is not installed there, so nothing here imports it).

It reads one JSON request per line on stdin and answers one JSON line on stdout:
- {"op": "load", "file": F}: the venues' messages as each peer receives them,
  {peer: {venue: [text, ...]}};
- {"op": "versions"}: the peers' and the interpreter's versions;
- {"op": "trades", "peer": P, "venue": V}: every trade the peer makes of the messages, as
  [id, price, amount, side, time in microseconds (cryptofeed) or milliseconds (ccxt)];
- {"op": "time", "peer": P, "venue": V}: one pass over the messages, {"seconds": s}.
"""

from __future__ import annotations

import asyncio
import json
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

SYMBOLS = {"binance": ("BTC-USDT", "BTCUSDT"), "kraken": ("BTC-USD", "BTC/USD")}
SYMBOLS["coinbase"] = ("BTC-USD", "BTC-USD")
CCXT_MARKETS = {
    "binance": ("BTCUSDT", "BTC/USDT", "BTC", "USDT"),
    "kraken": ("XBTUSD", "BTC/USD", "BTC", "USD"),
    "coinbase": ("BTC-USD", "BTC/USD", "BTC", "USD"),
}


class _Conn:
    """What cryptofeed's handlers read of a connection (Coinbase checks its sequence numbers)."""

    uuid = "bench"


class CryptofeedPeer:
    """cryptofeed's own `message_handler`: raw text to its Trade objects, as a live feed runs it,
    with the symbol map set in place of the REST call that loads it."""

    def __init__(self) -> None:
        from cryptofeed.defines import BINANCE, COINBASE, KRAKEN, TRADES
        from cryptofeed.exchanges import Binance, Coinbase, Kraken
        from cryptofeed.symbols import Symbols

        self.trades: list[Any] = []
        self.keep = False
        feeds = {}
        for venue, ident, cls in (
            ("binance", BINANCE, Binance),
            ("kraken", KRAKEN, Kraken),
            ("coinbase", COINBASE, Coinbase),
        ):
            std, wire = SYMBOLS[venue]
            Symbols.set(ident, {std: wire}, {"tick_size": {}, "instrument_type": {std: "spot"}})
            feeds[venue] = cls(symbols=[std], channels=[TRADES], callbacks={TRADES: self._on_trade})
        self.feeds = feeds

    async def _on_trade(self, trade: Any, receipt: float) -> None:
        if self.keep:
            self.trades.append(trade)

    def run(self, venue: str, messages: list[str]) -> float:
        handler, conn = self.feeds[venue].message_handler, _Conn()

        async def one_pass() -> float:
            start = time.perf_counter()
            for text in messages:
                await handler(text, conn, time.time())
            return time.perf_counter() - start

        return asyncio.run(one_pass())

    def normalized(self, venue: str, messages: list[str]) -> list[list[Any]]:
        self.trades, self.keep = [], True
        self.run(venue, messages)
        self.keep = False
        return [
            [int(t.id), str(t.price), str(t.amount), t.side, round(t.timestamp * 1_000_000)]
            for t in self.trades
        ]


class CcxtPeer:
    """ccxt's parsers for the venues' WebSocket trades (ccxt.pro), after json.loads as its client
    does; markets set in place of the REST call that loads them."""

    def __init__(self) -> None:
        import ccxt.pro

        self.parsers: dict[str, Callable[[str], list[dict[str, Any]]]] = {}
        exchanges = {}
        for venue, (ident, symbol, base, quote) in CCXT_MARKETS.items():
            ex = getattr(ccxt.pro, venue)()
            market = {
                "id": ident,
                "symbol": symbol,
                "base": base,
                "quote": quote,
                "baseId": base,
                "quoteId": quote,
                "type": "spot",
                "spot": True,
                "active": True,
                "precision": {},
                "limits": {},
                "info": {},
            }
            ex.set_markets([market])
            exchanges[venue] = (ex, ex.markets[symbol])
        binance, b_market = exchanges["binance"]
        kraken, k_market = exchanges["kraken"]
        coinbase, c_market = exchanges["coinbase"]
        self.parsers["binance"] = lambda text: [
            binance.parse_ws_trade(json.loads(text)["data"], b_market)
        ]
        self.parsers["kraken"] = lambda text: kraken.parse_trades(
            json.loads(text)["data"], k_market
        )
        self.parsers["coinbase"] = lambda text: [
            coinbase.parse_trade(trade, c_market)
            for event in json.loads(text)["events"]
            for trade in event["trades"]
        ]

    def run(self, venue: str, messages: list[str]) -> float:
        parse = self.parsers[venue]
        start = time.perf_counter()
        for text in messages:
            parse(text)
        return time.perf_counter() - start

    def normalized(self, venue: str, messages: list[str]) -> list[list[Any]]:
        parse = self.parsers[venue]
        return [
            [int(t["id"]), repr(t["price"]), repr(t["amount"]), t["side"], t["timestamp"]]
            for text in messages
            for t in parse(text)
        ]


def main() -> None:
    peers: dict[str, Any] = {"cryptofeed": CryptofeedPeer(), "ccxt": CcxtPeer()}
    messages: dict[str, dict[str, list[str]]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        if op == "load":
            with open(request["file"]) as f:
                messages = json.load(f)
            answer: Any = {"peers": sorted(messages)}
        elif op == "versions":
            answer = {
                "python": platform.python_version(),
                "cryptofeed": version("cryptofeed"),
                "ccxt": version("ccxt"),
            }
        elif op == "trades":
            peer, venue = request["peer"], request["venue"]
            answer = peers[peer].normalized(venue, messages[peer][venue])
        elif op == "time":
            peer, venue = request["peer"], request["venue"]
            seconds = peers[peer].run(venue, messages[peer][venue])
            answer = {"seconds": seconds}
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    main()
