"""One venue's feed: its session, its trade-id cursors, its gap repair, delivering to a sink."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from operator import attrgetter

import httpx

from k2.errors import K2Error, ParseError
from k2.exchanges.base import Signal, VenueAdapter
from k2.ingest.repair import GapRepairer, id_gap, window_gap
from k2.ingest.rest import RestGate
from k2.ingest.session import Connection, Delivered, FeedSession
from k2.ingest.sink import Sink
from k2.ingest.state import ResumedGap, SymbolCursor
from k2.ingest.stats import STOPPED, FeedStats
from k2.ingest.suspects import Suspects
from k2.ingest.tracker import ContiguousTracker, SeenTracker, Verdict
from k2.records import Reject, Source, Trade
from k2.settings import IngestSettings, VenueSettings

log = logging.getLogger(__name__)
_by_id = attrgetter("trade_id")
# A run of messages passes its trades on at least every this many: the sink applies backpressure
# per call, and a run of 512 batched messages can hold tens of thousands of trades (the simulator's
# firehose put 60,000 in one and overran the writer's 100,000-row budget by 80 %).
MAX_RUN_TRADES = 2048


class Feed:
    """Everything one venue needs to turn its WebSocket and REST APIs into an exact trade stream."""

    def __init__(
        self,
        adapter: VenueAdapter,
        symbols: Sequence[str],
        venue: VenueSettings,
        ingest: IngestSettings,
        sink: Sink,
        http: httpx.AsyncClient,
        cursors: dict[str, SymbolCursor] | None = None,
        pending: Sequence[ResumedGap] = (),
    ) -> None:
        self.adapter, self.symbols = adapter, list(symbols)
        self.venue, self.ingest, self.sink = venue, ingest, sink
        self.name = adapter.name
        self.stats = FeedStats(adapter.name)
        self.rest = RestGate(
            http,
            venue.rest_url or adapter.default_rest_url,
            adapter.rest_policy,
            self.stats,
            ingest.rest_timeout_s,
        )
        self.max_id_jump = venue.max_id_jump or adapter.max_id_jump
        adapter.expect(self.symbols)  # a trade of any other symbol is a reject
        self.trackers: dict[str, ContiguousTracker | SeenTracker] = {}
        for symbol in self.symbols:
            self.stats.symbol(symbol)
            self._tracker(symbol, (cursors or {}).get(symbol))
        self._suspects = Suspects(
            self.name, self.max_id_jump, self.trackers, self.stats, sink.gap, self._reject
        )
        self.repairer = GapRepairer(
            adapter,
            self.rest,
            self.trackers,
            self._offer_backfill,
            sink.gap,
            self._quarantine_rest,
            self.stats,
            ingest.gap_grace_s,
            ingest.gap_retry_for_s,
        )
        self._pending = list(pending)
        self._listing_checked = not ingest.check_listing
        self.session: FeedSession | None = None

    def _tracker(
        self, symbol: str, cursor: SymbolCursor | None = None
    ) -> ContiguousTracker | SeenTracker:
        if self.adapter.contiguous_ids:
            tracker: ContiguousTracker | SeenTracker = ContiguousTracker(
                cursor.high if cursor else None, cursor.high_ts if cursor else 0, self.max_id_jump
            )
        else:
            tracker = SeenTracker(
                self.ingest.recent_ids,
                cursor.recent if cursor else (),
                cursor.high_ts if cursor else 0,
                self.max_id_jump,
            )
        self.trackers[symbol] = tracker
        return tracker

    # -- start-up -------------------------------------------------------------------------------

    async def check_listing(self) -> list[str]:
        """Check the configured symbols against the venue's listing; return those to subscribe."""
        try:
            listing = await asyncio.wait_for(
                self.adapter.fetch_listing(self.rest, self.symbols), self.ingest.rest_timeout_s * 2
            )
        except (K2Error, TimeoutError) as err:
            log.warning(
                "%s: cannot reach the venue's symbol listing (%s); subscribing unchecked "
                "and checking again after connecting",
                self.name,
                err,
            )
            return self.symbols
        except Exception:  # an adapter bug must not stop the feed: capture unchecked, say so loudly
            log.exception(
                "%s: the symbol listing could not be read; subscribing unchecked", self.name
            )
            return self.symbols
        self._listing_checked = True
        self.adapter.use_listing(listing)
        keep = []
        for symbol in self.symbols:
            stats = self.stats.symbol(symbol)
            if symbol not in listing.symbols:
                stats.listing = "not listed"
                log.error(
                    "%s: %r is not listed by the venue; not subscribing to it "
                    "(fix the instruments file)",
                    self.name,
                    symbol,
                )
                continue
            status = listing.not_trading.get(symbol)
            stats.listing = status or "listed"
            if status:
                log.warning(
                    "%s: %r is listed with status %r (not trading now); subscribing anyway",
                    self.name,
                    symbol,
                    status,
                )
            keep.append(symbol)
        return keep

    async def run(self, stop: asyncio.Event, repair_stop: asyncio.Event | None = None) -> None:
        """Run the feed until `stop` is set;
        gap repairs go on until `repair_stop` (default: `stop`)."""
        repair_stop = repair_stop or stop
        symbols = await self.check_listing() if self.ingest.check_listing else self.symbols
        for gap, holes in self._pending:
            tracker = self.trackers.get(gap.symbol) or self._tracker(gap.symbol)
            if isinstance(tracker, ContiguousTracker):
                for lo, hi in holes:
                    tracker.holes.add(lo, hi)
            await self.repairer.submit(gap, record=False)
        if not symbols:
            log.error("%s: no listed symbols to capture", self.name)
            self.stats.set_state(STOPPED, "no listed symbols")
            await self.repairer.run(repair_stop)
            return
        self.session = FeedSession(
            venue=self.name,
            url=self.adapter.ws_url(self.venue.ws_url or self.adapter.default_ws_url, symbols),
            subscribe=self.adapter.subscribe_messages(symbols),
            on_messages=self.on_messages,
            on_connected=self.on_connected,
            settings=self.ingest,
            stats=self.stats,
            heartbeat_timeout_s=self.venue.heartbeat_timeout_s or self.adapter.heartbeat_timeout_s,
            max_connection_age_s=self.venue.max_connection_age_s
            or self.adapter.max_connection_age_s,
            rotate_margin_s=self.venue.rotate_margin_s,
        )
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.repairer.run(repair_stop))
            tg.create_task(self.session.run(stop))

    async def finish(self) -> None:
        """After the feed has stopped: suspects never confirmed go to rejects (nothing vanishes)."""
        await self._suspects.drop_all("never confirmed before the feed stopped")

    # -- live path ------------------------------------------------------------------------------

    async def on_connected(self, conn: Connection, after_outage: bool) -> None:
        if not self._listing_checked:
            asyncio.get_running_loop().create_task(self.check_listing())
        if after_outage and not self.adapter.contiguous_ids:
            await self._repair_windows()

    async def _repair_windows(self, symbols: Sequence[str] | None = None) -> None:
        # Ids may skip on this venue, so what a disconnect lost is found by time, not by id.
        held = self._suspects.held
        for symbol, tracker in self.trackers.items():
            if symbols is not None and symbol not in symbols:
                continue
            if tracker.high is not None:
                await self.repairer.submit(
                    window_gap(self.name, symbol, tracker.high, tracker.high_ts)
                )
            elif held.get(symbol):  # a first trade not confirmed yet: what followed it
                newest = held[symbol][-1][0]
                await self.repairer.submit(
                    window_gap(self.name, symbol, newest.trade_id, newest.ts_event)
                )

    async def on_messages(
        self, raws: list[bytes], arrived: list[int], conn: Connection
    ) -> Delivered:
        """Parse a run of messages from `conn` and pass their trades on, in arrival order."""
        stats = self.stats
        stats.messages += len(raws)
        stats.last_message_ns = arrived[-1]
        parse = self.adapter.parse
        run: list[Trade] = []  # trades of this run not yet offered to the trackers
        delivered = shutdown = False
        try:
            for raw, recv_ns in zip(raws, arrived, strict=True):
                try:
                    parsed = parse(raw, recv_ns)
                except ParseError as err:
                    # The window repair starts after these.
                    if run and not self.adapter.contiguous_ids:
                        await self._ingest(run, conn.conn_id, Source.WS)
                        run = []
                    await self._reject(err.reason, raw, recv_ns, conn.conn_id)
                    continue
                if isinstance(parsed, Trade):  # a message that was exactly one trade
                    run.append(parsed)
                    delivered = True
                    continue
                sequence = parsed.sequence
                if sequence is not None:
                    last = conn.last_sequence
                    if last is None or sequence > last:
                        conn.last_sequence = sequence
                    if last is not None and sequence > last + 1:
                        stats.sequence_gaps += 1
                        if not self.adapter.contiguous_ids:
                            # A window repair starts at each tracker's newest event time: the
                            # trackers must have seen the trades before the loss (the earlier
                            # messages of this run), and none after it (this message's).
                            if run:
                                await self._ingest(run, conn.conn_id, Source.WS)
                                run = []
                            await self._repair_windows()
                trades = parsed.trades
                if trades:
                    # A message's trades in id order (venues may list the newest first); across
                    # messages, arrival order stands (a late message is a late fill).
                    if len(trades) == 1:
                        run.append(trades[0])
                    else:
                        run.extend(sorted(trades, key=_by_id))
                    delivered = True
                    if len(run) >= MAX_RUN_TRADES:  # let the sink's backpressure act (see above)
                        await self._ingest(run, conn.conn_id, Source.WS)
                        run = []
                if parsed.rejected:
                    if run and not self.adapter.contiguous_ids:
                        await self._ingest(run, conn.conn_id, Source.WS)
                        run = []
                    for rejected in parsed.rejected:
                        await self._reject(rejected.reason, raw, recv_ns, conn.conn_id)
                signal = parsed.signal
                if signal is not None:
                    if signal is Signal.SHUTDOWN:
                        shutdown = True
                    elif signal is Signal.ERROR:
                        stats.venue_errors += 1
                        log.warning(
                            "%s: venue reported an error on %s: %s",
                            self.name,
                            conn.conn_id,
                            parsed.detail,
                        )
        finally:
            # Even if something above fails (an adapter bug),
            # what was parsed before it is passed on.
            if run:
                await self._ingest(run, conn.conn_id, Source.WS)
        return Delivered(delivered, shutdown)

    async def _reject(
        self, reason: str, raw: bytes, recv_ns: int, conn_id: str, live: bool = True
    ) -> None:
        self.stats.rejects += 1
        log.debug("%s: rejected message on %s: %s", self.name, conn_id, reason)
        await self.sink.reject(Reject(self.name, reason, raw, recv_ns, conn_id))
        if live and not self.adapter.contiguous_ids:
            # A rejected message may have held a trade, and on this venue no later id can reveal
            # it missing: read back the window of each symbol it names (every symbol, if none).
            named = [s for s in self.trackers if s.encode() in raw]
            await self._repair_windows(named or None)

    async def _quarantine_rest(self, err: ParseError) -> None:
        await self._reject(
            f"REST: {err.reason}", err.raw, time.time_ns(), self.repairer.conn_id, live=False
        )

    async def _offer_backfill(self, trades: Sequence[Trade], conn_id: str) -> int:
        # REST pages may run newest first.
        return await self._ingest(sorted(trades, key=_by_id), conn_id, Source.REST)

    async def _ingest(self, trades: Sequence[Trade], conn_id: str, source: Source) -> int:
        """Offer trades (each symbol's in the order to judge them) to the trackers; pass them on."""
        live = source is Source.WS
        accepted: list[Trade] = []
        # suspects among `trades` (ids of the objects), not passed on yet
        held: set[int] | None = None
        confirmed: list[Trade] = []  # suspects held earlier that the stream has now confirmed
        stats, trackers, symbols, suspects = (
            self.stats,
            self.trackers,
            self.stats.symbols,
            self._suspects.held,
        )
        duplicate, fill, new, suspect = (
            Verdict.DUPLICATE,
            Verdict.FILL,
            Verdict.NEW,
            Verdict.SUSPECT,
        )
        for trade in trades:
            symbol, ts_event = trade.symbol, trade.ts_event
            tracker = trackers.get(symbol) or self._tracker(symbol)
            previous_ts = tracker.high_ts
            verdict, hole = tracker.offer(trade.trade_id, ts_event)
            if verdict is suspect:
                held = held or set()
                held.add(id(trade))
                released = await self._suspects.hold(trade, conn_id, tracker)
                # The first opens the suspicious gap; the rest are offered as usual.
                for t in released:
                    confirmed.append(t)
                    if t is not released[0]:
                        previous_ts = tracker.high_ts
                        verdict, hole = tracker.offer(t.trade_id, t.ts_event)
                        if verdict is duplicate:
                            stats.duplicates += 1
                            continue
                        await self._accept(t, verdict, hole, previous_ts, accepted, live)
                    else:
                        accepted.append(t)
                        self._count(t)
                continue
            if verdict is duplicate:
                sym = symbols.get(symbol) or stats.symbol(symbol)
                stats.duplicates += 1
                sym.duplicates += 1
                continue
            if suspects and verdict is new and live and symbol in suspects:
                await self._suspects.drop(symbol, f"the stream went on from {trade.trade_id - 1}")
            if hole is None and verdict is not fill:  # the common case, inline
                accepted.append(trade)
                sym = symbols.get(symbol) or stats.symbol(symbol)
                sym.trades += 1
                sym.last_trade_recv_ns = trade.ts_recv
                if ts_event > sym.last_trade_event_ns:
                    sym.last_trade_event_ns = ts_event
                continue
            await self._accept(trade, verdict, hole, previous_ts, accepted, live)
        stats.trades += len(accepted)
        received = trades if held is None else [t for t in trades if id(t) not in held] + confirmed
        await self.sink.trades(received, accepted, conn_id, source)
        return len(accepted)

    def _count(self, trade: Trade) -> None:
        sym = self.stats.symbols.get(trade.symbol) or self.stats.symbol(trade.symbol)
        sym.trades += 1
        sym.last_trade_recv_ns = trade.ts_recv
        if trade.ts_event > sym.last_trade_event_ns:
            sym.last_trade_event_ns = trade.ts_event

    async def _accept(
        self,
        trade: Trade,
        verdict: Verdict,
        hole: tuple[int, int] | None,
        previous_ts: int,
        accepted: list[Trade],
        live: bool,
    ) -> None:
        accepted.append(trade)
        self._count(trade)
        if verdict is Verdict.FILL and live:
            self.stats.late_fills += 1
        if hole is not None:
            await self.repairer.submit(
                id_gap(self.name, trade.symbol, hole[0], hole[1], previous_ts, trade.ts_event)
            )
