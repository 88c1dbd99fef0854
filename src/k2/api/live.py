"""The live stream: trades as they become visible in silver, and the candles they change, to every
WebSocket client whose filters they match.

One poller thread per API process reads silver's new rows by each writer's ingest sequence (the
offload's marks, archive/marks.py: once a writer's row S is visible, all its lower ones are), so it
works the same in `k2 up` and in `k2 api` beside a ClickHouse server, and never touches the write
path. It runs only while a client is connected. Each client has a bounded queue: a client that
falls further behind than that is cut off (close code 1013), and nobody else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from k2.errors import K2Error
from k2.hotstore.queries import merged_candles_sql
from k2.hotstore.schema import DATABASE, SILVER_TABLE, TIMEFRAME_BY_NAME
from k2.hotstore.store import HotStore
from k2.query import candle_tiers, frames, tiers

log = logging.getLogger(__name__)
POLL_S = 0.25
QUEUE_MESSAGES = 1_000  # per client: batches of rows, one or two per poll


@dataclass(eq=False)
class Subscriber:
    """One client: its filters, and the queue its socket task drains."""

    venue: str | None
    symbol: str | None
    timeframe: str | None  # candle updates of this timeframe too
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MESSAGES)
    )
    too_slow: bool = False

    def matches(self, table: pa.Table) -> pa.Table:
        if self.venue:
            table = table.filter(pc.equal(table.column("exchange"), self.venue))
        if self.symbol:
            table = table.filter(pc.equal(table.column("canonical_symbol"), self.symbol))
        return table

    def offer(self, messages: list[dict[str, Any]]) -> None:
        """Queue one poll's messages from the poller's thread; a full queue cuts the client off."""

        def put() -> None:
            for message in messages:
                if self.too_slow:
                    return
                try:
                    self.queue.put_nowait(message)
                except asyncio.QueueFull:
                    self.too_slow = True
                    with contextlib.suppress(asyncio.QueueEmpty):
                        self.queue.get_nowait()  # room for the end
                    self.queue.put_nowait(None)

        with contextlib.suppress(RuntimeError):  # the client's loop is closed: it has gone
            self.loop.call_soon_threadsafe(put)


class LiveFeed:
    """Polls silver for new trades while anyone listens, and hands them out."""

    def __init__(self, store: Callable[[], HotStore], poll_s: float = POLL_S) -> None:
        self._store, self._poll_s = store, poll_s
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._thread: threading.Thread | None = None
        self._marks: dict[str, int] | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.add(subscriber)
            if self._thread is None or not self._thread.is_alive():
                self._marks = None  # from now: what is already stored is not "live"
                self._thread = threading.Thread(target=self._run, name="k2-live", daemon=True)
                self._thread.start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._subscribers:
                    self._thread = None
                    return
                subscribers = list(self._subscribers)
            started = time.monotonic()
            try:
                self._poll(subscribers)
            except K2Error as err:  # the store is away: say so, try again at the next poll
                log.warning("live stream: cannot read new trades: %s", err)
            time.sleep(max(0.0, self._poll_s - (time.monotonic() - started)))

    def _poll(self, subscribers: list[Subscriber]) -> None:
        store = self._store()
        low = min(self._marks.values()) if self._marks else 0
        highs = {
            str(w): int(s)
            for w, s in store.rows(
                f"SELECT writer, max(ingest_seq) FROM {DATABASE}.{SILVER_TABLE} "
                "WHERE ingest_seq > {low:UInt64} GROUP BY writer",
                {"low": low},
            )
        }
        if self._marks is None:
            self._marks = highs
            return
        fresh = {w: s for w, s in highs.items() if s > self._marks.get(w, 0)}
        if not fresh:
            return
        from k2.archive.marks import between

        rows = tiers.hot_trades_where(store, between(self._marks, fresh))
        self._marks |= fresh
        if not len(rows):
            return
        candles = self._candles(store, rows, {s.timeframe for s in subscribers if s.timeframe})
        for sub in subscribers:
            messages = []
            if len(mine := sub.matches(rows)):
                messages.append({"type": "trades", "rows": frames.rows(mine)})
            if sub.timeframe and len(changed := sub.matches(candles[sub.timeframe])):
                messages.append({"type": "candles", "rows": frames.rows(changed)})
            if messages:
                sub.offer(messages)

    @staticmethod
    def _candles(store: HotStore, trades: pa.Table, timeframes: set[str]) -> dict[str, pa.Table]:
        """The candles of `timeframes` that `trades` changed, as they stand now."""
        out = {}
        first_ns = pc.min(pc.cast(trades.column("ts_event"), pa.int64())).as_py()
        markets = sorted(
            set(
                zip(
                    trades.column("exchange").to_pylist(),
                    trades.column("canonical_symbol").to_pylist(),
                    strict=True,
                )
            )
        )
        for tf in timeframes:
            step = TIMEFRAME_BY_NAME[tf].seconds * 1_000_000_000
            where = (
                " WHERE has({markets:Array(Tuple(String, String))}, "
                "(toString(exchange), toString(canonical_symbol))) "
                "AND window_start >= fromUnixTimestamp64Nano({start:Int64}, 'UTC')"
            )
            sql = merged_candles_sql(tf, where, "window_start, exchange, canonical_symbol")
            data = store.query_arrow(sql, {"markets": markets, "start": first_ns // step * step})
            out[tf] = candle_tiers.conform_candles(data)
        return out
