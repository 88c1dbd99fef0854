"""Trades whose id jumped beyond the venue's bound, held per symbol until the stream says which
they were: a real jump (the held trades pass on, the skipped ids become a suspicious gap, never
fetched) or a corrupt frame (the stream goes on from the old cursor, and the held trade becomes a
reject).

A symbol with no cursor (never stored) has nothing to check its first id against, so its first
trades are held the same way until a later one carries on from them within the bound; one corrupt
first frame then becomes a reject instead of a cursor far above every real id."""

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
        """Hold a trade whose id jumped beyond the bound, or a symbol's first trade when it has no
        cursor. Return the held trades, oldest first, once the stream confirms them: the newest
        trade carries on, within the bound, from earlier held ones.

        The confirmed chain is walked back from the newest trade: a held trade joins it when the
        chain's oldest id lies above it within the bound. Held trades off the chain (a corrupt id
        among them) become rejects. After a jump from a known cursor, the skipped ids are recorded
        as a suspicious gap, never fetched."""
        symbol = trade.symbol
        queue = self.held.setdefault(symbol, [])
        queue.append((trade, conn_id))
        chain, off = self._chain(queue)
        if len(chain) < 2:
            if len(queue) > MAX_SUSPECTS:
                await self._reject_one(*queue.pop(0), "too many suspects were held")
            if tracker.high is not None:
                log.warning(
                    "%s %s: trade id %d is more than %d above the highest id %s; holding it until "
                    "the stream confirms it",
                    self.venue,
                    symbol,
                    trade.trade_id,
                    self.max_id_jump,
                    tracker.high,
                )
            return []
        del self.held[symbol]
        first = chain[0][0]
        for held, held_conn in off:
            await self._reject_one(held, held_conn, f"the stream went on from {first.trade_id}")
        before, before_ts = tracker.high, tracker.high_ts
        _, hole = tracker.adopt(first.trade_id, first.ts_event)
        if before is None:  # a first trade, now confirmed: nothing jumped
            return [t for t, _ in chain]
        detail = (
            f"trade id jumped from {before} to {first.trade_id}, more than the venue's bound of "
            f"{self.max_id_jump}; confirmed by {len(chain) - 1} later trades; not fetched"
        )
        log.warning("%s %s: %s", self.venue, symbol, detail)
        self.stats.gaps_found += 1
        self.stats.gaps_suspicious += 1
        self.stats.symbol(symbol).gaps += 1
        lo, hi = hole if hole is not None else (first.trade_id, first.trade_id - 1)
        await self._record_gap(
            suspicious_gap(self.venue, symbol, lo, hi, before_ts, first.ts_event, detail)
        )
        return [t for t, _ in chain]

    def _chain(
        self, queue: list[tuple[Trade, str]]
    ) -> tuple[list[tuple[Trade, str]], list[tuple[Trade, str]]]:
        """Split held trades into the chain ending at the newest (oldest first) and the rest."""
        bound = self.max_id_jump
        chain, off = [queue[-1]], []
        low = queue[-1][0].trade_id
        for item in reversed(queue[:-1]):
            trade_id = item[0].trade_id
            if trade_id < low <= trade_id + bound:
                chain.append(item)
                low = trade_id
            else:
                off.append(item)
        chain.reverse()
        off.reverse()
        return chain, off

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
        what = (
            f"trade id {trade.trade_id} was the symbol's first (no cursor to check it against)"
            if high is None
            else f"trade id {trade.trade_id} is more than {self.max_id_jump} above the highest id "
            f"{high} (the venue's bound)"
        )
        await self._reject(
            f"{what} and {why}",
            trade.raw,
            trade.ts_recv,
            conn_id,
        )
