"""The feeds' sink in the cluster shape: every delivery published to Kafka (bus/topics.py).

The producer is idempotent with acks=all, and never gives a message up (`message.timeout.ms` 0):
while the broker is down, messages wait in the client's bounded buffer; once it is full, the feeds
wait too (backpressure, counted in `overflows`). Nothing is dropped; a message the broker refuses
for good is counted, logged and makes the process stop (a restart resumes from the bus).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

from k2.bus.client import config, partition_for
from k2.bus.stats import ProducerStats
from k2.bus.topics import (
    encode_gap,
    encode_reject,
    encode_trades,
    rejects_topic,
    trade_key,
    trades_topic,
)
from k2.ingest.state import ResumeState
from k2.records import Gap, Reject, Source, Trade
from k2.settings import BusSettings

log = logging.getLogger(__name__)
ROOM_POLL_S = 0.05  # while the buffer is full, look for room this often
ACK_STALL_S = 10.0  # messages waiting and no acknowledgement this long: the broker is away
_trade_id = attrgetter("trade_id")


class BusSink:
    """Implements the feeds' Sink by publishing to the bus."""

    def __init__(self, settings: BusSettings, partitions: dict[str, int]) -> None:
        from confluent_kafka import Producer

        self._settings = settings
        self._trades = trades_topic(settings.topic_prefix)
        self._rejects = rejects_topic(settings.topic_prefix)
        self._partitions = partitions
        self.stats = ProducerStats(buffer_limit=settings.producer_buffer_messages)
        self._producer = Producer(
            config(
                settings,
                **{
                    "enable.idempotence": True,
                    "acks": "all",
                    "message.timeout.ms": 0,  # never give up: a down broker is waited out
                    "queue.buffering.max.messages": settings.producer_buffer_messages,
                    "queue.buffering.max.kbytes": settings.producer_buffer_kbytes,
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "error_cb": self._on_error,
                },
            )
        )
        self._delivered_at_outage = 0
        # per (venue, symbol): the highest (id, event time) published; see TradeBatch.high_id
        self._highs: dict[tuple[str, str], tuple[int, int]] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="k2-bus-producer", daemon=True)
        self._poller.start()

    def resume_from(self, state: ResumeState) -> None:
        """Start each symbol's published high where the bus left it (bus/resume.py)."""
        for venue, cursors in state.cursors.items():
            for symbol, cursor in cursors.items():
                if cursor.high is not None:
                    self._highs[venue, symbol] = (cursor.high, cursor.high_ts)

    # -- Sink -------------------------------------------------------------------------------------
    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str, source: Source
    ) -> None:
        if not received:
            return
        new = {id(t) for t in accepted}
        by_symbol: dict[str, list[Trade]] = {}
        for t in received:
            by_symbol.setdefault(t.symbol, []).append(t)
        venue, most = received[0].exchange, self._settings.max_message_trades
        messages = []  # encoded before the first await: the trades are taken
        for symbol, trades in by_symbol.items():
            key = trade_key(venue, symbol)
            for i in range(0, len(trades), most):
                part = trades[i : i + most]
                flags = [id(t) in new for t in part]
                top = max(part, key=_trade_id)
                high = self._highs.get((venue, symbol), (-1, 0))
                if top.trade_id > high[0]:
                    high = self._highs[venue, symbol] = (top.trade_id, top.ts_event)
                messages.append(
                    (key, encode_trades(venue, symbol, part, flags, conn_id, source, high))
                )
        for key, value in messages:
            await self._produce(self._trades, key, value)

    async def gap(self, gap: Gap) -> None:
        await self._produce(self._trades, trade_key(gap.exchange, gap.symbol), encode_gap(gap))

    async def reject(self, reject: Reject) -> None:
        await self._produce(self._rejects, reject.exchange.encode(), encode_reject(reject))

    # -- producing --------------------------------------------------------------------------------
    async def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        partition = partition_for(key, self._partitions[topic])
        waited_since = 0.0
        while True:
            try:
                self._producer.produce(
                    topic, value, key, partition=partition, on_delivery=self._delivered
                )
                break
            except BufferError:
                if not waited_since:
                    waited_since = time.monotonic()
                    self.stats.overflows += 1
                    self.stats.last_overflow_at = time.time()
                await asyncio.sleep(ROOM_POLL_S)
        if waited_since:
            self.stats.backpressure_s += time.monotonic() - waited_since
        self.stats.messages += 1

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
            return
        self.stats.delivery_errors += 1
        self.stats.last_delivery_error_at = time.time()
        log.error(
            "bus: the broker did not take a message for %s (partition %s): %s",
            msg.topic(),
            msg.partition(),
            err.str(),
        )
        if err.fatal() or not err.retriable():
            self.stats.fatal = self.stats.fatal or err.str()

    def _on_error(self, err: Any) -> None:
        from confluent_kafka import KafkaError

        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            if not self.stats.brokers_down_since:
                self.stats.brokers_down_since = time.time()
                self._delivered_at_outage = self.stats.delivered
                log.error("bus: the broker is unreachable (%s); messages wait", err.str())
        elif err.fatal():
            self.stats.fatal = err.str()
            log.error("bus: the producer failed for good: %s", err.str())
        else:
            log.warning("bus: %s", err.str())

    def _poll(self) -> None:
        """Serve delivery reports (and errors) as they come, on this thread. A broker that keeps
        its connections open and answers nothing (hung, or cut off beyond them) raises no error
        until requests time out; one that acknowledges nothing for ACK_STALL_S while messages
        wait counts as unreachable too."""
        progress_at, delivered = time.monotonic(), self.stats.delivered
        while not self._stop.is_set():
            self._producer.poll(0.1)
            self.stats.buffered = len(self._producer)
            now = time.monotonic()
            if self.stats.delivered > delivered or not self.stats.buffered:
                progress_at, delivered = now, self.stats.delivered
            elif now - progress_at > ACK_STALL_S and not self.stats.brokers_down_since:
                self.stats.brokers_down_since = time.time()
                self._delivered_at_outage = self.stats.delivered
                log.error(
                    "bus: the broker has acknowledged nothing for %.0f s, %d messages waiting; "
                    "counted as unreachable",
                    now - progress_at,
                    self.stats.buffered,
                )
            if self.stats.brokers_down_since and self.stats.delivered > self._delivered_at_outage:
                # a delivery since the outage began: the broker is back
                log.warning(
                    "bus: the broker takes messages again after %.0f s",
                    time.time() - self.stats.brokers_down_since,
                )
                self.stats.brokers_down_since = 0.0

    async def close(self, deadline: float) -> int:
        """Wait for every message to be acknowledged, until the monotonic `deadline`; return the
        number left unacknowledged (0 when all were)."""
        while len(self._producer) and time.monotonic() < deadline:
            await asyncio.to_thread(self._producer.flush, min(0.5, deadline - time.monotonic()))
        self._stop.set()
        self._poller.join()
        left = len(self._producer)
        self.stats.buffered = left
        if left:
            log.error(
                "bus: stopping with %d messages the broker has not acknowledged; the next start "
                "repairs their trades from the venues",
                left,
            )
        return left
