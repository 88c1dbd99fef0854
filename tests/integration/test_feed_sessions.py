"""Feed sessions against the simulator:
the emitted stream equals the venue's ground truth exactly."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import pytest

from k2.ingest.feed import Feed
from k2.ingest.runner import build_feeds, http_client, run_feeds
from k2.ingest.stats import OFFLINE
from k2.instruments import load_instruments
from k2.records import REPAIRED, Source
from k2.settings import load_settings
from k2.simulator import Faults, Simulator
from tests.support import SMALL, CollectingSink, assert_exact, capture, fast_ingest, wait_until

pytestmark = pytest.mark.integration
HEARTBEAT_VENUES = ("kraken", "coinbase")


def faults(*names: str, **params: float) -> Faults:
    base = {
        "disconnect_every_s": 2.0,
        "connection_max_age_s": 3.0,
        "ping_interval_s": 5.0,
        "stall_s": 6.0,
        "drop_p": 0.03,
        "duplicate_p": 0.03,
        "delay_p": 0.03,
        "garbage_p": 0.02,
    }
    return Faults(seed=5, enabled=frozenset(names), **(base | params))  # type: ignore[arg-type]


def stats(cap, venue):  # type: ignore[no-untyped-def]
    return next(f.stats for f in cap.feeds if f.name == venue)


def final_gaps(sink: CollectingSink) -> dict[str, str]:
    out: dict[str, str] = {}
    for gap in sink.gaps:  # records arrive as pending, then again with their outcome
        out[gap.gap_id] = gap.outcome
    return out


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_no_faults() -> None:
    cap = run(capture(SMALL, faults(), fault_seconds=3))
    assert assert_exact(cap.sim, cap.sink.accepted) > 100
    for f in cap.feeds:
        assert f.stats.reconnects == 0 and f.stats.gaps_found == 0 and f.stats.duplicates == 0


def test_disconnects_are_repaired() -> None:
    cap = run(capture(SMALL, faults("disconnect"), fault_seconds=6))
    assert_exact(cap.sim, cap.sink.accepted)
    for venue in SMALL:
        assert stats(cap, venue).reconnects >= 2, venue
    assert stats(cap, "binance").gaps_found + stats(cap, "kraken").gaps_found > 0
    assert set(final_gaps(cap.sink).values()) <= {REPAIRED}


def test_dropped_trades_are_backfilled_over_rest() -> None:
    cap = run(capture(SMALL, faults("gaps"), fault_seconds=5))
    assert_exact(cap.sim, cap.sink.accepted)
    for venue in SMALL:
        s = stats(cap, venue)
        assert s.gaps_found > 0 and s.backfilled > 0 and s.gaps_repaired == s.gaps_found, venue
    assert stats(cap, "coinbase").sequence_gaps > 0  # Coinbase loss shows as sequence_num jumps
    # the feed tells the sink how each trade came: the backfilled ones as REST, the rest as WS
    accepted = {id(t) for t in cap.sink.accepted}
    came = Counter((source, id(t) in accepted) for t, _conn, source in cap.sink.received)
    assert came[Source.REST, True] == sum(stats(cap, v).backfilled for v in SMALL) > 0
    assert came[Source.WS, True] == len(cap.sink.accepted) - came[Source.REST, True]
    outcomes = final_gaps(cap.sink)
    assert outcomes and set(outcomes.values()) == {REPAIRED}


def test_duplicates_are_dropped_and_counted() -> None:
    cap = run(capture(SMALL, faults("duplicates"), fault_seconds=4))
    assert_exact(cap.sim, cap.sink.accepted)
    for venue in SMALL:
        assert stats(cap, venue).duplicates > 0, venue
    # Bronze sees every copy: received minus accepted is exactly the duplicate count.
    assert len(cap.sink.received) - len(cap.sink.accepted) == sum(
        f.stats.duplicates for f in cap.feeds
    )


def test_out_of_order_trades_are_kept() -> None:
    cap = run(capture(SMALL, faults("reorder"), fault_seconds=4))
    assert_exact(cap.sim, cap.sink.accepted)
    for venue in SMALL:
        assert stats(cap, venue).late_fills > 0, venue


def test_malformed_frames_are_quarantined_without_reconnecting() -> None:
    cap = run(capture(SMALL, faults("malformed"), fault_seconds=4))
    assert_exact(cap.sim, cap.sink.accepted)
    for venue in SMALL:
        s = stats(cap, venue)
        assert s.rejects > 0 and s.reconnects == 0, venue
    assert cap.sink.rejects and all(r.reason and r.raw for r in cap.sink.rejects)


def test_rest_rate_limits_are_respected() -> None:
    cap = run(capture(SMALL, faults("gaps", "ratelimit"), fault_seconds=5))
    assert_exact(cap.sim, cap.sink.accepted)
    assert (
        stats(cap, "binance").rest_rate_limited > 0 and stats(cap, "coinbase").rest_rate_limited > 0
    )
    # Retry-After (1 s) was honoured: after a 429 the venue saw no request for the next 0.9 s.
    for venue in ("binance", "coinbase"):
        log = cap.sim.servers[venue].http_log
        limited = [i for i, (_, status, _) in enumerate(log) if status == 429]
        assert limited, venue
        for i in limited:
            if i + 1 < len(log):
                assert log[i + 1][2] - log[i][2] >= 0.9, (venue, log[i], log[i + 1])


def test_server_shutdown_rotates_make_before_break() -> None:
    cap = run(capture(SMALL, faults("shutdown", disconnect_every_s=2.5), fault_seconds=6))
    assert_exact(cap.sim, cap.sink.accepted)
    s = stats(cap, "binance")
    # the overlap covered the switch: nothing to repair
    assert s.rotations >= 1 and s.gaps_found == 0


def test_connection_age_cut_rotates_before_it() -> None:
    cap = run(capture(SMALL, faults("rotation"), fault_seconds=7))
    assert_exact(cap.sim, cap.sink.accepted)
    s = stats(cap, "binance")
    assert s.rotations >= 2 and s.reconnects == 0 and s.gaps_found == 0


def test_silent_connection_trips_the_watchdog() -> None:
    overrides = {v: {"heartbeat_timeout_s": 2.0} for v in HEARTBEAT_VENUES}
    cap = run(
        capture(
            SMALL,
            faults("stall", disconnect_every_s=2.0),
            fault_seconds=7,
            venue_overrides=overrides,
        )
    )
    assert_exact(cap.sim, cap.sink.accepted)
    for venue in HEARTBEAT_VENUES:
        assert stats(cap, venue).watchdog_trips >= 1, venue


def test_on_demand_outage_silence_and_rate_limits_are_survived_exactly() -> None:
    """The simulator's on-demand faults (GET /_sim/fault, bench/faults.py's tools): a bad request
    is refused; an outage drops every connection and refuses new ones for its time; silence trips
    the heartbeat venues' watchdogs; rate limiting answers REST with 429. The stream stays exact."""
    import httpx
    import websockets

    answers: dict[str, int] = {}
    overrides = {v: {"heartbeat_timeout_s": 2.0} for v in HEARTBEAT_VENUES}

    async def during(cap) -> None:  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient() as client:

            async def fault(venue: str, name: str, seconds: float) -> int:
                url = f"{cap.sim.rest_url(venue)}/_sim/fault"
                reply = await client.get(url, params={"name": name, "seconds": seconds})
                return reply.status_code

            answers["bad name"] = await fault("binance", "flood", 1)
            answers["bad time"] = await fault("binance", "outage", -1)
            await asyncio.sleep(1.0)
            for venue in SMALL:
                answers[f"outage {venue}"] = await fault(venue, "outage", 2)
            try:
                async with websockets.connect(cap.sim.ws_url("binance")):
                    answers["connect in an outage"] = 101
            except websockets.InvalidStatus as err:
                answers["connect in an outage"] = err.response.status_code
            await asyncio.sleep(3.0)
            for venue in SMALL:  # a gap to repair while REST refuses
                await fault(venue, "ratelimit", 4)
                await fault(venue, "outage", 1)
            await asyncio.sleep(5.0)
            for venue in SMALL:
                await fault(venue, "silent", 3)

    cap = run(capture(SMALL, faults(), fault_seconds=13, venue_overrides=overrides, during=during))
    assert answers.pop("bad name") == answers.pop("bad time") == 400
    assert answers.pop("connect in an outage") == 503
    assert set(answers.values()) == {200}, answers
    assert_exact(cap.sim, cap.sink.accepted)
    for venue in SMALL:
        assert stats(cap, venue).reconnects >= 3, venue  # two outages, then the silence
    for venue in HEARTBEAT_VENUES:
        assert stats(cap, venue).watchdog_trips >= 1, venue
    assert sum(stats(cap, v).rest_rate_limited for v in SMALL) > 0
    assert set(final_gaps(cap.sink).values()) <= {REPAIRED}


class StallingSink(CollectingSink):
    """Holds the feeds back for `hold_s` once, as a writer applying backpressure would."""

    def __init__(self, hold_s: float) -> None:
        super().__init__()
        self.hold_s, self.held = hold_s, False

    async def trades(self, received, accepted, conn_id, source):  # type: ignore[no-untyped-def]
        # taken first, as the Sink contract asks
        await super().trades(received, accepted, conn_id, source)
        if not self.held and len(self.accepted) > 50:
            self.held = True
            await asyncio.sleep(self.hold_s)


def test_backpressure_longer_than_the_heartbeat_timeout_is_not_silence() -> None:
    # Messages keep arriving (queued, unread) while K2 holds its own feeds back: no watchdog trip,
    # no reconnect, nothing lost.
    overrides = {v: {"heartbeat_timeout_s": 1.0} for v in HEARTBEAT_VENUES}
    cap = run(
        capture(SMALL, faults(), fault_seconds=4, sink=StallingSink(3.0), venue_overrides=overrides)
    )
    assert cap.sink.held
    assert_exact(cap.sim, cap.sink.accepted)
    for f in cap.feeds:
        assert f.stats.watchdog_trips == 0 and f.stats.reconnects == 0, f.name


@pytest.mark.slow
def test_every_fault_at_once_on_all_default_instruments() -> None:
    overrides = {v: {"heartbeat_timeout_s": 3.0} for v in HEARTBEAT_VENUES}
    cap = run(
        capture(
            load_instruments(),
            faults(
                *__import__("k2.simulator").simulator.FAULTS,
                disconnect_every_s=3.0,
                connection_max_age_s=4.0,
            ),
            rate=10,
            fault_seconds=12,
            venue_overrides=overrides,
        )
    )
    n = assert_exact(cap.sim, cap.sink.accepted)
    assert n > 3000
    for f in cap.feeds:
        s = f.stats
        assert s.duplicates and s.rejects and s.gaps_found and s.reconnects, f.name
        assert s.gaps_found == s.gaps_repaired, f.name


def test_binance_protocol_pings_are_answered() -> None:
    # The simulated Binance pings every 0.5 s and drops a connection that misses a pong for 1.5 s.
    cap = run(capture({"binance": ("BTCUSDT",)}, faults(ping_interval_s=0.5), fault_seconds=4))
    assert_exact(cap.sim, cap.sink.accepted)
    s = stats(cap, "binance")
    assert s.connects == 1 and s.reconnects == 0


def capture_btcusdt(
    instruments: tuple[str, ...], prepare: Callable[[Feed], None] = lambda feed: None
) -> Feed:
    """Run one Binance feed for `instruments` against a simulator listing only BTCUSDT, until it
    has captured a few BTCUSDT trades; `prepare` may alter the feed before it starts."""

    async def main() -> Feed:
        sim = Simulator({"binance": ("BTCUSDT",)}, seed=1, trades_per_second=20)
        async with sim:
            settings = load_settings(venues=sim.venue_settings(), ingest=fast_ingest())
            stop = asyncio.Event()
            async with http_client() as http:
                (feed,) = build_feeds(settings, {"binance": instruments}, CollectingSink(), http)
                prepare(feed)
                task = asyncio.create_task(run_feeds([feed], stop))
                await wait_until(lambda: feed.stats.symbol("BTCUSDT").trades > 5, 10, "trades")
                stop.set()
                await task
        return feed

    return run(main())


def test_unlisted_symbol_is_reported_and_the_rest_captured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        feed = capture_btcusdt(("BTCUSDT", "NOPEUSDT"))
    assert feed.stats.symbol("NOPEUSDT").listing == "not listed"
    assert feed.stats.symbol("BTCUSDT").listing == "listed"
    assert "NOPEUSDT" not in (feed.session.url if feed.session else "")
    assert any("'NOPEUSDT' is not listed" in r.getMessage() for r in caplog.records)


def test_a_broken_listing_check_is_logged_and_capture_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*args: object) -> None:
        raise KeyError("symbols")  # an adapter bug, not a K2Error

    def break_listing(feed: Feed) -> None:
        feed.adapter.fetch_listing = broken  # type: ignore[method-assign]

    with caplog.at_level(logging.ERROR):
        capture_btcusdt(("BTCUSDT",), break_listing)
    assert any("listing could not be read" in r.getMessage() for r in caplog.records)


def test_without_internet_the_feed_says_so_and_keeps_retrying() -> None:
    async def main() -> None:
        settings = load_settings(
            venues={
                "kraken": {
                    "ws_url": "wss://k2-offline-test.invalid/v2",
                    "rest_url": "https://k2-offline-test.invalid",
                }
            },
            ingest=fast_ingest(backoff_max_s=0.5),
        )
        stop = asyncio.Event()
        async with http_client() as http:
            (feed,) = build_feeds(settings, {"kraken": ("BTC/USD",)}, CollectingSink(), http)
            task = asyncio.create_task(run_feeds([feed], stop))
            await wait_until(
                lambda: feed.session is not None and feed.session._backoff.attempts >= 3,
                20,
                "retries",
            )
            assert feed.stats.state == OFFLINE
            assert "cannot resolve k2-offline-test.invalid" in feed.stats.state_detail
            stop.set()
            await task

    run(main())


def test_restart_resumes_from_cursors_without_duplicates() -> None:
    """A second feed that resumes from the first one's cursors repairs the downtime,
    duplicates nothing."""
    from k2.ingest.state import SymbolCursor

    async def main() -> None:
        sim = Simulator(SMALL, seed=3, trades_per_second=20, tick_s=0.02)
        async with sim:
            settings = load_settings(venues=sim.venue_settings(), ingest=fast_ingest())
            first, second = CollectingSink(), CollectingSink()
            async with http_client() as http:
                stop = asyncio.Event()
                feeds = build_feeds(settings, SMALL, first, http)
                task = asyncio.create_task(run_feeds(feeds, stop))
                await asyncio.sleep(2)
                stop.set()
                await task
                cursors: dict[str, dict[str, SymbolCursor]] = {}
                for f in feeds:  # what a store would reload: the high mark and recent ids
                    for symbol, tr in f.trackers.items():
                        mine = [
                            t.trade_id
                            for t in first.accepted
                            if t.exchange == f.name and t.symbol == symbol
                        ]
                        cursors.setdefault(f.name, {})[symbol] = SymbolCursor(
                            tr.high, tr.high_ts, mine[-1000:]
                        )
                await asyncio.sleep(1.5)  # downtime: trades happen that nobody sees
                from k2.ingest.state import ResumeState

                stop = asyncio.Event()
                feeds2 = build_feeds(settings, SMALL, second, http, ResumeState(cursors))
                task = asyncio.create_task(run_feeds(feeds2, stop))
                await asyncio.sleep(2)
                sim.paused = True
                from tests.support import drain

                await drain(feeds2)
                stop.set()
                await task
        assert_exact(sim, first.accepted + second.accepted)

    run(main())
