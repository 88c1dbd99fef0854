"""Trades whose id jumped beyond the venue's bound, held per symbol until the stream says which
they were: a real jump (the held trades pass on, the skipped ids become a suspicious gap, never
fetched) or a corrupt frame (the stream goes on from the old cursor, and the held trade becomes a
reject)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from k2.ingest.repair import suspicious_gap
from k2.ingest.stats import FeedStats
from k2.ingest.tracker import ContiguousTracker, SeenTracker
from k2.records import Gap, Trade

log = logging.getLogger(__name__)
# Suspects held per symbol while waiting for the stream; beyond this, the oldest is rejected.
MAX_SUSPECTS = 64
Tracker = ContiguousTracker | SeenTracker


class Suspects:
    """One feed's held suspects, by symbol, each with the connection it came on."""

    def __init__(
        self,
        venue: str,
        max_id_jump: int,
        trackers: dict[str, Tracker],
        stats: FeedStats,
        record_gap: Callable[[Gap], Awaitable[None]],
        reject: Callable[[str, bytes, int, str], Awaitable[None]],
    ) -> None:
        self.venue, self.max_id_jump, self.trackers, self.stats = (
            venue,
            max_id_jump,
            trackers,
            stats,
        )
        self._record_gap, self._reject = record_gap, reject
        self.held: dict[str, list[tuple[Trade, str]]] = {}

    async def hold(self, trade: Trade, conn_id: str, tracker: Tracker) -> list[Trade]:
        """Hold a trade whose id jumped beyond the bound. Return the held trades, oldest first, once
        the stream confirms the jump (a later trade carries on from the last one held); the
        skipped ids are then recorded as a suspicious gap, never fetched."""
        symbol = trade.symbol
        queue = self.held.setdefault(symbol, [])
        last = queue[-1][0] if queue else None
        queue.append((trade, conn_id))
        if last is None or not last.trade_id < trade.trade_id <= last.trade_id + self.max_id_jump:
            if len(queue) > MAX_SUSPECTS:
                await self._reject_one(*queue.pop(0), "too many suspects were held")
            log.warning(
                "%s %s: trade id %d is more than %d above the highest id %s; holding it until the "
                "stream confirms it",
                self.venue,
                symbol,
                trade.trade_id,
                self.max_id_jump,
                tracker.high,
            )
            return []
        del self.held[symbol]
        first = queue[0][0]
        before, before_ts = tracker.high, tracker.high_ts
        _, hole = tracker.adopt(first.trade_id, first.ts_event)
        detail = (
            f"trade id jumped from {before} to {first.trade_id}, more than the venue's bound of "
            f"{self.max_id_jump}; confirmed by {len(queue) - 1} later trades; not fetched"
        )
        log.warning("%s %s: %s", self.venue, symbol, detail)
        self.stats.gaps_found += 1
        self.stats.gaps_suspicious += 1
        self.stats.symbol(symbol).gaps += 1
        lo, hi = hole if hole is not None else (first.trade_id, first.trade_id - 1)
        await self._record_gap(
            suspicious_gap(self.venue, symbol, lo, hi, before_ts, first.ts_event, detail)
        )
        return [t for t, _ in queue]

    async def drop(self, symbol: str, why: str) -> None:
        """The stream went on without them: the symbol's suspects become rejects."""
        for trade, conn_id in self.held.pop(symbol, []):
            await self._reject_one(trade, conn_id, why)

    async def drop_all(self, why: str) -> None:
        for symbol in list(self.held):
            await self.drop(symbol, why)

    async def _reject_one(self, trade: Trade, conn_id: str, why: str) -> None:
        # A venue whose ids skip cannot see the true trade missing by id: the feed's reject reads
        # its window back.
        high = self.trackers[trade.symbol].high
        self.stats.suspects_rejected += 1
        await self._reject(
            f"trade id {trade.trade_id} is more than {self.max_id_jump} above the highest id "
            f"{high} (the venue's bound) and {why}",
            trade.raw,
            trade.ts_recv,
            conn_id,
        )
