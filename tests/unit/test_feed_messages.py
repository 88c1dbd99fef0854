"""Feed.on_messages: a run of messages from one connection, without sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence

import httpx

from k2.exchanges import make_adapter
from k2.ingest.feed import MAX_RUN_TRADES, Feed
from k2.ingest.session import Connection
from k2.records import Gap, Reject, Trade
from k2.settings import IngestSettings, VenueSettings


class Collect:
    def __init__(self) -> None:
        self.accepted: list[Trade] = []
        self.gaps: list[Gap] = []

    async def trades(self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str) -> None:
        self.accepted.extend(accepted)

    async def gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    async def reject(self, reject: Reject) -> None:
        pass


def coinbase(sequence: int, trade_id: int, time: str) -> bytes:
    trade = {"trade_id": str(trade_id), "product_id": "BTC-USD", "price": "100.5", "size": "0.1", "side": "SELL",
             "time": time}  # fmt: skip
    return json.dumps({"channel": "market_trades", "timestamp": time, "sequence_num": sequence,
                       "events": [{"type": "update", "trades": [trade]}]}).encode()  # fmt: skip


def test_a_sequence_jump_repairs_from_the_trades_before_the_loss_not_after() -> None:
    # Messages 1 and 3 arrive in one run; 2 is lost. The window repair must start at trade 10's
    # time (the newest before the loss), not trade 12's (the message that revealed it).
    raws = [coinbase(1, 10, "2026-11-29T10:00:00.000001Z"), coinbase(3, 12, "2026-11-29T10:00:30.000001Z")]

    async def run() -> tuple[list[Trade], list[Gap]]:
        sink = Collect()
        async with httpx.AsyncClient() as http:
            feed = Feed(make_adapter("coinbase"), ["BTC-USD"], VenueSettings(), IngestSettings(check_listing=False),
                        sink, http)  # fmt: skip
            delivered = await feed.on_messages(raws, time.time_ns(), Connection("coinbase-1", None))  # type: ignore[arg-type]
            assert delivered.trades and not delivered.shutdown and feed.stats.sequence_gaps == 1
        return sink.accepted, sink.gaps

    trades, gaps = asyncio.run(run())
    assert [t.trade_id for t in trades] == [10, 12]
    (gap,) = gaps
    assert gap.kind == "window" and gap.ts_from == trades[0].ts_event


def test_what_was_parsed_before_an_adapter_bug_is_still_passed_on() -> None:
    class Buggy:
        def __init__(self) -> None:
            self.real = make_adapter("coinbase")

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

        def parse(self, raw: bytes, recv_ns: int) -> object:
            if b'"sequence_num": 2' in raw:
                raise RuntimeError("adapter bug")
            return self.real.parse(raw, recv_ns)

    raws = [coinbase(1, 10, "2026-11-29T10:00:00.000001Z"), coinbase(2, 11, "2026-11-29T10:00:01.000001Z")]

    async def run() -> list[Trade]:
        sink = Collect()
        async with httpx.AsyncClient() as http:
            feed = Feed(Buggy(), ["BTC-USD"], VenueSettings(), IngestSettings(check_listing=False), sink, http)  # type: ignore[arg-type]
            try:
                await feed.on_messages(raws, time.time_ns(), Connection("coinbase-1", None))  # type: ignore[arg-type]
            except RuntimeError:
                pass
            else:
                raise AssertionError("the adapter's error must reach the session (it reconnects)")
        return sink.accepted

    assert [t.trade_id for t in asyncio.run(run())] == [10]


def test_a_run_of_big_messages_reaches_the_sink_in_pieces_its_backpressure_can_hold() -> None:
    # 100 messages of 100 trades: one call of 10,000 rows would overrun a writer's budget before
    # it could push back; the feed passes them on every ~MAX_RUN_TRADES.
    def message(sequence: int) -> bytes:
        trades = [{"trade_id": str(sequence * 100 + i), "product_id": "BTC-USD", "price": "100.5", "size": "0.1",
                   "side": "SELL", "time": "2026-11-29T10:00:00.000001Z"} for i in range(100)]  # fmt: skip
        return json.dumps({"channel": "market_trades", "sequence_num": sequence,
                           "events": [{"type": "update", "trades": trades}]}).encode()  # fmt: skip

    calls: list[int] = []

    class Sizes(Collect):
        async def trades(self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str) -> None:
            calls.append(len(received))
            await super().trades(received, accepted, conn_id)

    async def run() -> int:
        sink = Sizes()
        async with httpx.AsyncClient() as http:
            feed = Feed(make_adapter("coinbase"), ["BTC-USD"], VenueSettings(), IngestSettings(check_listing=False),
                        sink, http)  # fmt: skip
            await feed.on_messages([message(i) for i in range(1, 101)], time.time_ns(), Connection("coinbase-1", None))  # type: ignore[arg-type]
        return len(sink.accepted)

    assert asyncio.run(run()) == 10_000
    assert sum(calls) == 10_000 and max(calls) <= MAX_RUN_TRADES + 100 and len(calls) >= 10_000 // (MAX_RUN_TRADES + 100)
