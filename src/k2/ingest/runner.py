"""Build and run the feeds for every enabled venue in the instruments file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import httpx

from k2.exchanges import make_adapter
from k2.exchanges.limits import Limits
from k2.ingest.feed import Feed
from k2.ingest.sink import Sink
from k2.ingest.state import ResumeState
from k2.ingest.stats import OFFLINE, RECONNECTING
from k2.instruments import Instruments
from k2.records import Gap, GapKind
from k2.settings import Settings
from k2.timeutil import ns_to_rfc3339

log = logging.getLogger(__name__)


def build_feeds(
    settings: Settings,
    instruments: Instruments,
    sink: Sink,
    http: httpx.AsyncClient,
    resume: ResumeState | None = None,
) -> list[Feed]:
    """Return one Feed per enabled venue that has symbols, resuming from `resume` if given."""
    resume = resume or ResumeState()
    feeds = []
    for venue, symbols in instruments.items():
        if not symbols or not settings.venue(venue).enabled:
            continue
        limits = Limits.from_skew(settings.ingest.max_clock_skew_s)
        feeds.append(
            Feed(
                make_adapter(venue, limits),
                symbols,
                settings.venue(venue),
                settings.ingest,
                sink,
                http,
                resume.cursors.get(venue),
                resume.pending.get(venue, ()),
            )
        )
    return feeds


def http_client() -> httpx.AsyncClient:
    """Return the HTTP client feeds share for REST (listing checks and backfill)."""
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=16),
        follow_redirects=True,
        headers={"User-Agent": "k2-market-data"},
    )


async def run_feeds(
    feeds: Sequence[Feed],
    stop: asyncio.Event,
    repair_stop: asyncio.Event | None = None,
    offline_hint: str | None = None,
) -> None:
    """Run `feeds` until `stop` is set (their gap repairs until `repair_stop`, default `stop`).

    If no venue can be reached at all, `offline_hint` (the command that runs offline) is named once.
    """
    async with asyncio.TaskGroup() as tg:
        for feed in feeds:
            tg.create_task(feed.run(stop, repair_stop))
        if offline_hint is not None:
            tg.create_task(notice_unreachable(feeds, stop, offline_hint))


def unreachable(feeds: Sequence[Feed]) -> bool:
    """True once every feed has failed its first connection and none has ever connected."""
    return bool(feeds) and all(
        f.stats.connects == 0 and f.stats.state in (OFFLINE, RECONNECTING) for f in feeds
    )


async def notice_unreachable(feeds: Sequence[Feed], stop: asyncio.Event, offline_hint: str) -> None:
    """After the first round of failed connections, say once that no venue is reachable and how
    to run offline. The feeds keep retrying: venues (and networks) come back."""
    while not stop.is_set():
        if unreachable(feeds):
            why = "; ".join(f"{f.name}: {f.stats.state_detail.split('; retry')[0]}" for f in feeds)
            log.warning(
                "no venue is reachable (%s). K2 keeps retrying; to run offline against the "
                "built-in simulator, use %s",
                why,
                offline_hint,
            )
            return
        if any(f.stats.connects for f in feeds):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)


async def stop_feeds(
    feeds: Sequence[Feed],
    stop: asyncio.Event,
    repair_stop: asyncio.Event,
    task: asyncio.Task[None],
    until: float,
) -> list[Gap]:
    """Stop `feeds` (run by `task`) by the monotonic time `until`; return the gaps left open.

    The live sessions stop first, so no new gap appears; the repairs already queued go on until
    none is left or `until` comes; then they stop too, and whatever is still running is cancelled
    (a gap not repaired stays pending in its record). Suspects never confirmed become rejects.
    """
    stop.set()
    while any(f.repairer.pending() for f in feeds) and time.monotonic() < until and not task.done():  # noqa: ASYNC110 - repairers expose no "queue empty" event
        await asyncio.sleep(0.05)
    repair_stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), max(until - time.monotonic(), 0.5))
    except TimeoutError:
        log.warning("feeds still busy at the end of the grace period; cancelling them")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for feed in feeds:
        await feed.finish()
    return [gap for feed in feeds for gap in feed.repairer.open_gaps()]


def describe_gap(gap: Gap) -> str:
    """One line for a gap left open: venue, symbol, and its ids or time window."""
    if gap.kind == GapKind.IDS:
        what = f"ids {gap.first_id}-{gap.last_id}"
    else:
        what = f"trades after {ns_to_rfc3339(gap.ts_from)}" + (
            f" up to {ns_to_rfc3339(gap.ts_to)}" if gap.ts_to else ""
        )
    return f"{gap.exchange} {gap.symbol} {what}"
