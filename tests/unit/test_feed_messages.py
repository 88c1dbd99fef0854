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
from k2.records import Gap, Reject, Source, Trade
from k2.settings import IngestSettings, VenueSettings


class Collect:
    def __init__(self) -> None:
        self.accepted: list[Trade] = []
        self.gaps: list[Gap] = []

    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str, source: Source
    ) -> None:
        self.accepted.extend(accepted)

    async def gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    async def reject(self, reject: Reject) -> None:
        pass


def coinbase(sequence: int, trade_id: int, time: str) -> bytes:
    trade = {
        "trade_id": str(trade_id),
        "product_id": "BTC-USD",
        "price": "100.5",
        "size": "0.1",
        "side": "SELL",
        "time": time,
    }
    return json.dumps(
        {
            "channel": "market_trades",
            "timestamp": time,
            "sequence_num": sequence,
            "events": [{"type": "update", "trades": [trade]}],
        }
    ).encode()


def test_a_sequence_jump_repairs_from_the_trades_before_the_loss_not_after() -> None:
    # Messages 1 and 3 arrive in one run; 2 is lost. The window repair must start at trade 10's
    # time (the newest before the loss), not trade 12's (the message that revealed it).
    raws = [
        coinbase(1, 10, "2026-11-29T10:00:00.000001Z"),
        coinbase(3, 12, "2026-11-29T10:00:30.000001Z"),
    ]

    async def run() -> tuple[list[Trade], list[Gap]]:
        sink = Collect()
        async with httpx.AsyncClient() as http:
            feed = Feed(
                make_adapter("coinbase"),
                ["BTC-USD"],
                VenueSettings(),
                IngestSettings(check_listing=False),
                sink,
                http,
            )
            delivered = await feed.on_messages(
                raws, [time.time_ns()] * len(raws), Connection("coinbase-1", None)
            )  # type: ignore[arg-type]
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

    raws = [
        coinbase(1, 10, "2026-11-29T10:00:00.000001Z"),
        coinbase(2, 11, "2026-11-29T10:00:01.000001Z"),
    ]

    async def run() -> list[Trade]:
        sink = Collect()
        async with httpx.AsyncClient() as http:
            feed = Feed(
                Buggy(),
                ["BTC-USD"],
                VenueSettings(),
                IngestSettings(check_listing=False),
                sink,
                http,
            )  # type: ignore[arg-type]
            feed.trackers["BTC-USD"].adopt(9, 1)  # a cursor: trade 10 is new, not a first
            try:
                await feed.on_messages(
                    raws, [time.time_ns()] * len(raws), Connection("coinbase-1", None)
                )  # type: ignore[arg-type]
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
        trades = [
            {
                "trade_id": str(sequence * 100 + i),
                "product_id": "BTC-USD",
                "price": "100.5",
                "size": "0.1",
                "side": "SELL",
                "time": "2026-11-29T10:00:00.000001Z",
            }
            for i in range(100)
        ]
        return json.dumps(
            {
                "channel": "market_trades",
                "sequence_num": sequence,
                "events": [{"type": "update", "trades": trades}],
            }
        ).encode()

    calls: list[int] = []

    class Sizes(Collect):
        async def trades(
            self,
            received: Sequence[Trade],
            accepted: Sequence[Trade],
            conn_id: str,
            source: Source,
        ) -> None:
            calls.append(len(received))
            await super().trades(received, accepted, conn_id, source)

    async def run() -> int:
        sink = Sizes()
        async with httpx.AsyncClient() as http:
            feed = Feed(
                make_adapter("coinbase"),
                ["BTC-USD"],
                VenueSettings(),
                IngestSettings(check_listing=False),
                sink,
                http,
            )
            await feed.on_messages(
                [message(i) for i in range(1, 101)],
                [time.time_ns()] * 100,
                Connection("coinbase-1", None),
            )  # type: ignore[arg-type]
        return len(sink.accepted)

    assert asyncio.run(run()) == 10_000
    assert (
        sum(calls) == 10_000
        and max(calls) <= MAX_RUN_TRADES + 100
        and len(calls) >= 10_000 // (MAX_RUN_TRADES + 100)
    )


class Recorder(Collect):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[Trade] = []
        self.rejects: list[Reject] = []

    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str, source: Source
    ) -> None:
        self.received.extend(received)
        await super().trades(received, accepted, conn_id, source)

    async def reject(self, reject: Reject) -> None:
        self.rejects.append(reject)


def binance(trade_id: int, ms: int) -> bytes:
    return json.dumps(
        {
            "stream": "btcusdt@trade",
            "data": {
                "e": "trade",
                "E": ms,
                "s": "BTCUSDT",
                "t": trade_id,
                "p": "100.5",
                "q": "0.1",
                "T": ms,
                "m": False,
                "M": True,
            },
        }
    ).encode()


def run_binance(ids: list[int], **venue: int) -> tuple[Feed, Recorder]:
    now_ms = time.time_ns() // 1_000_000

    async def run() -> tuple[Feed, Recorder]:
        sink = Recorder()
        async with httpx.AsyncClient() as http:
            feed = Feed(
                make_adapter("binance"),
                ["BTCUSDT"],
                VenueSettings(**venue),
                IngestSettings(check_listing=False),
                sink,
                http,
            )
            for i, trade_id in enumerate(ids):  # one message per run, as they would trickle in
                await feed.on_messages(
                    [binance(trade_id, now_ms + i)], [time.time_ns()], Connection("binance-1", None)
                )  # type: ignore[arg-type]
            await feed.finish()
        return feed, sink

    return asyncio.run(run())


def test_one_corrupt_id_far_beyond_the_cursor_is_a_reject_and_its_true_id_a_gap() -> None:
    # 12 was sent as 12_000_000_012 (one corrupt frame); the stream goes on at 13.
    feed, sink = run_binance([10, 11, 12_000_000_012, 13, 14], max_id_jump=1_000_000)
    assert [t.trade_id for t in sink.accepted] == [10, 11, 13, 14]
    assert 12_000_000_012 not in {t.trade_id for t in sink.received}  # not even in bronze
    (reject,) = sink.rejects
    assert (
        "12000000012" in reject.reason
        and "went on from 12" in reject.reason
        and b"12000000012" in reject.raw
    )
    (gap,) = sink.gaps  # the true trade 12 is missing: an ordinary gap, repaired over REST
    assert (gap.first_id, gap.last_id, gap.outcome) == (12, 12, "pending")
    assert feed.trackers["BTCUSDT"].high == 14 and feed.stats.suspects_rejected == 1


def test_a_jump_the_stream_confirms_is_recorded_as_suspicious_and_never_fetched() -> None:
    # K2 was away longer than the bound covers: the stream really is at 5_000_000 now.
    feed, sink = run_binance([10, 11, 5_000_000, 5_000_001, 5_000_002], max_id_jump=1_000_000)
    assert [t.trade_id for t in sink.accepted] == [10, 11, 5_000_000, 5_000_001, 5_000_002]
    assert [t.trade_id for t in sink.received] == [10, 11, 5_000_000, 5_000_001, 5_000_002]
    (gap,) = sink.gaps
    assert (gap.first_id, gap.last_id, gap.outcome, gap.missing) == (
        12,
        4_999_999,
        "suspicious",
        4_999_988,
    )
    assert "more than the venue's bound of 1000000" in gap.detail and "not fetched" in gap.detail
    assert feed.repairer.pending() == 0 and not sink.rejects and feed.stats.gaps_suspicious == 1


def test_a_suspect_still_unconfirmed_at_stop_is_a_reject() -> None:
    _feed, sink = run_binance([10, 11, 9_000_000_000], max_id_jump=1_000_000)
    assert [t.trade_id for t in sink.accepted] == [10, 11]
    (reject,) = sink.rejects
    assert "never confirmed before the feed stopped" in reject.reason


def test_a_rejected_coinbase_trade_reads_its_symbols_window_back() -> None:
    # Coinbase ids may skip, so no later id reveals a rejected trade as missing:
    # its window is repaired.
    good = coinbase(1, 10, "2026-11-29T10:00:00.000001Z")
    bad = coinbase(2, 11, "2026-11-29T10:00:01.000001Z").replace(
        b'"price": "100.5"', b'"price": "-1"'
    )

    async def run() -> Recorder:
        sink = Recorder()
        async with httpx.AsyncClient() as http:
            feed = Feed(
                make_adapter("coinbase"),
                ["BTC-USD", "ETH-USD"],
                VenueSettings(),
                IngestSettings(check_listing=False),
                sink,
                http,
            )
            # a symbol with history that the message does not name
            feed.trackers["ETH-USD"].adopt(5, 1)
            feed.trackers["BTC-USD"].adopt(9, 1)  # a cursor: trade 10 is new, not a first
            await feed.on_messages(
                [good, bad], [time.time_ns()] * 2, Connection("coinbase-1", None)
            )  # type: ignore[arg-type]
        return sink

    sink = asyncio.run(run())
    assert [t.trade_id for t in sink.accepted] == [10] and len(sink.rejects) == 1
    (gap,) = sink.gaps
    assert gap.kind == "window" and gap.symbol == "BTC-USD"


def test_a_corrupt_first_trade_of_a_symbol_with_no_cursor_is_a_reject() -> None:
    # No cursor: the first frame's id was corrupted (+10^12); the stream goes on from the real ids.
    feed, sink = run_binance([1_000_000_000_010, 11, 12, 13], max_id_jump=1_000_000)
    assert [t.trade_id for t in sink.accepted] == [11, 12, 13]
    assert 1_000_000_000_010 not in {t.trade_id for t in sink.received}
    (reject,) = sink.rejects
    assert "1000000000010 was the symbol's first" in reject.reason
    assert "went on from 11" in reject.reason
    assert feed.trackers["BTCUSDT"].high == 13 and not sink.gaps


def test_a_corrupt_id_among_held_trades_is_left_off_the_confirmed_chain() -> None:
    # A real jump (5_000_000 on) with one corrupt frame inside it: the chain skips the corrupt one.
    feed, sink = run_binance(
        [10, 11, 5_000_000, 9_000_000_000, 5_000_001, 5_000_002], max_id_jump=1_000_000
    )
    assert [t.trade_id for t in sink.accepted] == [10, 11, 5_000_000, 5_000_001, 5_000_002]
    (reject,) = sink.rejects
    assert "9000000000" in reject.reason and "went on from 5000000" in reject.reason
    assert feed.trackers["BTCUSDT"].high == 5_000_002


def test_a_symbols_first_trade_waits_for_the_next_and_a_lone_one_is_a_reject_at_stop() -> None:
    _feed, sink = run_binance([10], max_id_jump=1_000_000)
    assert sink.accepted == []
    (reject,) = sink.rejects
    assert "was the symbol's first" in reject.reason
    assert "never confirmed before the feed stopped" in reject.reason
