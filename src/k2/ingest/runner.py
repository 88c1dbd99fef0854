"""Build and run the feeds for every enabled venue in the instruments file."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx

from k2.exchanges import make_adapter
from k2.exchanges.limits import Limits
from k2.ingest.feed import Feed
from k2.ingest.sink import Sink
from k2.ingest.state import ResumeState
from k2.instruments import Instruments
from k2.settings import Settings


def build_feeds(settings: Settings, instruments: Instruments, sink: Sink, http: httpx.AsyncClient,
                resume: ResumeState | None = None) -> list[Feed]:  # fmt: skip
    """Return one Feed per enabled venue that has symbols, resuming from `resume` if given."""
    resume = resume or ResumeState()
    feeds = []
    for venue, symbols in instruments.items():
        if not symbols or not settings.venue(venue).enabled:
            continue
        limits = Limits.from_skew(settings.ingest.max_clock_skew_s)
        feeds.append(Feed(make_adapter(venue, limits), symbols, settings.venue(venue), settings.ingest, sink,
                          http, resume.cursors.get(venue), resume.pending.get(venue, ())))  # fmt: skip
    return feeds


def http_client() -> httpx.AsyncClient:
    """Return the HTTP client feeds share for REST (listing checks and backfill)."""
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=16), follow_redirects=True,
                             headers={"User-Agent": "k2-market-data"})  # fmt: skip


async def run_feeds(feeds: Sequence[Feed], stop: asyncio.Event) -> None:
    """Run `feeds` until `stop` is set."""
    async with asyncio.TaskGroup() as tg:
        for feed in feeds:
            tg.create_task(feed.run(stop))
