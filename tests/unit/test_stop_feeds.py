"""stop_feeds: a stop ends by its deadline and hands back the gaps it could not repair."""

from __future__ import annotations

import asyncio
import time

import httpx

from k2.exchanges import make_adapter
from k2.ingest.feed import Feed
from k2.ingest.repair import id_gap, window_gap
from k2.ingest.runner import describe_gap, run_feeds, stop_feeds
from k2.records import gap_json
from k2.settings import IngestSettings, VenueSettings
from tests.unit.test_feed_messages import Recorder


def test_a_repair_that_cannot_finish_is_left_open_and_listed_at_the_deadline() -> None:
    async def run() -> tuple[list, float]:
        sink = Recorder()
        # Nothing listens on port 9: every REST call fails, and the repair retries for minutes.
        venue = VenueSettings(ws_url="ws://127.0.0.1:9/v2", rest_url="http://127.0.0.1:9")
        async with httpx.AsyncClient() as http:
            feed = Feed(
                make_adapter("kraken"),
                ["BTC/USD"],
                venue,
                IngestSettings(check_listing=False, gap_grace_s=0),
                sink,
                http,
            )
            stop, repair_stop = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(run_feeds([feed], stop, repair_stop))
            feed.trackers["BTC/USD"].adopt(100, 1)  # its cursor
            feed.trackers["BTC/USD"].offer(105, 2)  # ids 101..104 are missing
            await feed.repairer.submit(id_gap("kraken", "BTC/USD", 101, 104, 1, 2))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            left = await stop_feeds([feed], stop, repair_stop, task, started + 1.5)
            return left, time.monotonic() - started

    left, took = asyncio.run(run())
    assert took < 3.0  # the deadline, plus the cancellation
    (gap,) = left
    assert describe_gap(gap) == "kraken BTC/USD ids 101-104"
    assert gap_json(gap) | {"gap_id": ""} == {
        "exchange": "kraken",
        "symbol": "BTC/USD",
        "kind": "ids",
        "first_id": 101,
        "last_id": 104,
        "ts_from": "1970-01-01T00:00:00.000000001Z",
        "ts_to": "1970-01-01T00:00:00.000000002Z",
        "outcome": "pending",
        "gap_id": "",
    }
    window = window_gap("coinbase", "BTC-USD", 7, 1_800_000_000 * 10**9)
    assert describe_gap(window) == "coinbase BTC-USD trades after 2027-01-15T08:00:00.000000000Z"
