"""The gap repairer survives an adapter whose backfill fails in a way nobody planned for."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from k2.exchanges.base import Backfill, BackfillRequest
from k2.ingest.repair import GapRepairer, id_gap
from k2.ingest.stats import FeedStats
from k2.ingest.tracker import ContiguousTracker
from k2.records import REPAIRED, UNRECOVERABLE, Gap, Trade


class BuggyThenFine:
    """Backfill raises KeyError (a parsing bug) on its first call,
    then returns the ids asked for."""

    name = "testvenue"

    def __init__(self) -> None:
        self.calls = 0

    async def backfill(self, fetch: Any, request: BackfillRequest, recv_ns: Any) -> Backfill:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("price")
        trades = [
            Trade(self.name, request.symbol, "A/B", i, Decimal(1), Decimal(1), "buy", i, i)
            for i in range(request.first_id, request.last_id + 1)
        ]
        return Backfill(trades, complete=True)


def test_an_unexpected_backfill_error_leaves_the_gap_unrecoverable_and_repair_goes_on() -> None:
    async def run() -> list[Gap]:
        tracker = ContiguousTracker()
        for trade_id in (1, 5, 10):  # holes 2..4 and 6..9
            tracker.offer(trade_id, trade_id)
        recorded: list[Gap] = []

        async def offer(trades: list[Trade], conn_id: str) -> int:
            for t in trades:
                tracker.offer(t.trade_id, t.ts_event)
            return len(trades)

        async def record(gap: Gap) -> None:
            recorded.append(gap)

        adapter = BuggyThenFine()

        async def quarantine(err: object) -> None:
            raise AssertionError(f"nothing should be quarantined: {err}")

        repairer = GapRepairer(
            adapter,
            None,
            {"S": tracker},
            offer,
            record,
            quarantine,  # type: ignore[arg-type]
            FeedStats("testvenue"),
            grace_s=0,
            retry_for_s=5,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(repairer.run(stop))
        await repairer.submit(id_gap("testvenue", "S", 2, 4, 1, 5))
        await repairer.submit(id_gap("testvenue", "S", 6, 9, 5, 10))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if repairer.pending() == 0:
                break
        stop.set()
        # the repairer ended because it was told to, not by the error
        await asyncio.wait_for(task, 5)
        assert adapter.calls == 2
        return [g for g in recorded if g.outcome != "pending"]

    done = asyncio.run(run())
    assert [(g.first_id, g.outcome, g.missing, g.recovered) for g in done] == [
        (2, UNRECOVERABLE, 3, 0),
        (6, REPAIRED, 0, 4),
    ]
