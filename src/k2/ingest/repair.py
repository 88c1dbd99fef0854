"""Gap repair: fetch what the live stream missed over REST, and record every gap's outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec

from k2.errors import K2Error, ParseError, PermanentError, RateLimited
from k2.exchanges.base import Backfill, BackfillRequest, VenueAdapter
from k2.ingest.backoff import Backoff
from k2.ingest.rest import RestGate
from k2.ingest.stats import FeedStats
from k2.ingest.tracker import ContiguousTracker, SeenTracker
from k2.records import (
    PARTIAL,
    PENDING,
    REPAIRED,
    SUSPICIOUS,
    UNRECOVERABLE,
    Gap,
    GapKind,
    Outcome,
    Trade,
)

log = logging.getLogger(__name__)
WINDOW_MARGIN_NS = 1_000_000_000  # widen time windows by 1 s each side; ids dedupe the overlap

Offer = Callable[[Sequence[Trade], str], Awaitable[int]]  # (trades, conn_id) -> accepted count
Record = Callable[[Gap], Awaitable[None]]
Quarantine = Callable[[ParseError], Awaitable[None]]  # a REST row that failed validation


@dataclass
class _Job:
    gap: Gap
    due: float  # monotonic time to start (after the grace period)


def id_gap(venue: str, symbol: str, first: int, last: int, ts_from: int, ts_to: int) -> Gap:
    """Return a new pending gap for missing ids first..last (a deterministic id
    makes it idempotent)."""
    return Gap(
        f"{venue}:{symbol}:{first}-{last}",
        venue,
        symbol,
        first,
        last,
        ts_from,
        ts_to,
        time.time_ns(),
        0,
        PENDING,
        last - first + 1,
        0,
        GapKind.IDS,
    )


def suspicious_gap(
    venue: str, symbol: str, first: int, last: int, ts_from: int, ts_to: int, detail: str
) -> Gap:
    """Return a resolved gap for ids first..last that K2 will not fetch (a jump beyond the
    venue's bound)."""
    gap = id_gap(venue, symbol, first, last, ts_from, ts_to)
    return msgspec.structs.replace(
        gap,
        resolved_at=gap.detected_at,
        outcome=SUSPICIOUS,
        missing=max(last - first + 1, 0),
        detail=detail,
    )


def window_gap(venue: str, symbol: str, after_id: int, ts_from: int) -> Gap:
    """Return a new pending gap for "whatever traded after `ts_from`" (venues
    without contiguous ids)."""
    return Gap(
        f"{venue}:{symbol}:w{ts_from}",
        venue,
        symbol,
        after_id + 1,
        0,
        ts_from,
        0,
        time.time_ns(),
        0,
        PENDING,
        0,
        0,
        GapKind.WINDOW,
    )


class GapRepairer:
    """Works through a venue's gaps one at a time, within the venue's REST limits."""

    def __init__(
        self,
        adapter: VenueAdapter,
        rest: RestGate,
        trackers: dict[str, ContiguousTracker | SeenTracker],
        offer: Offer,
        record: Record,
        quarantine: Quarantine,
        stats: FeedStats,
        grace_s: float,
        retry_for_s: float,
    ) -> None:
        self._adapter, self._rest, self._trackers = adapter, rest, trackers
        self._offer, self._record, self._quarantine, self._stats = offer, record, quarantine, stats
        self._grace, self._retry_for = grace_s, retry_for_s
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._open_windows: set[str] = set()  # symbols with a window repair queued or running
        self._open: dict[str, Gap] = {}  # gap id -> gap, queued or being repaired
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def conn_id(self) -> str:
        return f"{self._adapter.name}-rest"

    def pending(self) -> int:
        return self._queue.qsize() + (0 if self.idle.is_set() else 1)

    def open_gaps(self) -> list[Gap]:
        """The gaps queued or being repaired,
        oldest first (what a stop leaves for the next start)."""
        return list(self._open.values())

    async def submit(self, gap: Gap, record: bool = True) -> None:
        """Queue `gap` for repair after the grace period (which lets out-of-order messages land)."""
        if gap.kind == GapKind.WINDOW:
            if gap.symbol in self._open_windows:
                return  # a queued window repair already covers everything after its start
            self._open_windows.add(gap.symbol)
        self._stats.gaps_found += 1
        self._stats.symbol(gap.symbol).gaps += 1
        self.idle.clear()
        self._open[gap.gap_id] = gap
        if record:
            await self._record(gap)
        self._queue.put_nowait(_Job(gap, time.monotonic() + self._grace))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self._queue.empty():
                self.idle.set()
            get = asyncio.create_task(self._queue.get())
            halt = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({get, halt}, return_when=asyncio.FIRST_COMPLETED)
            halt.cancel()
            if get not in done:
                get.cancel()
                return
            job = get.result()
            self.idle.clear()
            delay = job.due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            await self._repair(job.gap, stop)

    async def _fetch(self, request: BackfillRequest, stop: asyncio.Event) -> Backfill | None:
        deadline = time.monotonic() + self._retry_for
        backoff = Backoff(1.0, 30.0, jitter=0.3)
        while True:
            try:
                return await self._adapter.backfill(self._rest, request, time.time_ns)
            except RateLimited as err:
                self._rest.block(err.retry_after)
                continue
            except (PermanentError, ParseError) as err:
                log.error("%s %s: backfill refused: %s", self._adapter.name, request.symbol, err)
                return None
            except K2Error as err:
                wait = backoff.next_delay()
                if time.monotonic() + wait > deadline or stop.is_set():
                    log.error(
                        "%s %s: backfill gave up: %s", self._adapter.name, request.symbol, err
                    )
                    return None
                log.warning(
                    "%s %s: backfill failed (%s); retrying in %.1f s",
                    self._adapter.name,
                    request.symbol,
                    err,
                    wait,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
            # an adapter bug: retrying cannot help, and it must not stop the venue's feed
            except Exception:
                log.exception(
                    "%s %s: backfill failed unexpectedly; the gap stays unrepaired",
                    self._adapter.name,
                    request.symbol,
                )
                return None

    async def _repair(self, gap: Gap, stop: asyncio.Event) -> None:
        tracker = self._trackers[gap.symbol]
        if gap.kind == GapKind.IDS:
            assert isinstance(tracker, ContiguousTracker)
            total = gap.last_id - gap.first_id + 1
            missing = tracker.holes.count_in(gap.first_id, gap.last_id)
            if missing == 0:  # everything arrived late on the live stream
                await self._finish(gap, REPAIRED, 0, total)
                return
            request = BackfillRequest(gap.symbol, gap.first_id, gap.last_id, gap.ts_from, gap.ts_to)
        else:
            # From here on, a new loss must queue its own repair: this one ends at `now`.
            self._open_windows.discard(gap.symbol)
            now = time.time_ns()
            request = BackfillRequest(
                gap.symbol, 0, 0, max(gap.ts_from - WINDOW_MARGIN_NS, 0), now + WINDOW_MARGIN_NS
            )
            gap = msgspec.structs.replace(gap, ts_to=now)
        result = await self._fetch(request, stop)
        if result is None and stop.is_set():
            return  # stopped, not failed: the gap stays pending (and open) for the next start
        for err in result.rejected if result else ():
            await self._quarantine(err)
        accepted = await self._offer(result.trades, self.conn_id) if result else 0
        self._stats.backfilled += accepted
        if gap.kind == GapKind.IDS:
            remaining = tracker.holes.count_in(gap.first_id, gap.last_id)  # type: ignore[union-attr]
            outcome = (
                REPAIRED if remaining == 0 else PARTIAL if remaining < total else UNRECOVERABLE
            )
            await self._finish(gap, outcome, remaining, total - remaining)
        else:
            outcome = UNRECOVERABLE if result is None else REPAIRED if result.complete else PARTIAL
            last = max((t.trade_id for t in result.trades), default=0) if result else 0
            await self._finish(msgspec.structs.replace(gap, last_id=last), outcome, 0, accepted)

    async def _finish(self, gap: Gap, outcome: Outcome, missing: int, recovered: int) -> None:
        self._open.pop(gap.gap_id, None)
        done = msgspec.structs.replace(
            gap, outcome=outcome, missing=missing, recovered=recovered, resolved_at=time.time_ns()
        )
        if outcome == REPAIRED:
            self._stats.gaps_repaired += 1
        elif outcome == PARTIAL:
            self._stats.gaps_partial += 1
        else:
            self._stats.gaps_unrecoverable += 1
        level = logging.INFO if outcome == REPAIRED else logging.WARNING
        log.log(
            level,
            "%s %s gap %s: %s (recovered %d, missing %d)",
            gap.exchange,
            gap.symbol,
            gap.gap_id,
            outcome,
            recovered,
            missing,
        )
        await self._record(done)
