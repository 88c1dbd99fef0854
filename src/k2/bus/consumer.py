"""`k2 ingest`'s consumer-group members: the bus's partitions into the hot store, exactly once.

Per partition, messages are cut into batches: a batch is an offset range [first, last], and its
deduplication token is `<topic>/<partition>/<first>-<last>`. Before its insert, the cut is
recorded in `k2.bus_cuts`; after it, the offset `last + 1` is committed to the group. A member that
takes a partition over (a restart, a rebalance) starts at the recorded cut if the group's offset
has not passed it, and cuts exactly that range again: same rows, same token, so the store drops
what it already holds and completes what it lacks. Kafka transactions carry no part of the claim.
See docs/CLUSTER.md, "Exactly once", for the argument step by step.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pyarrow as pa

from k2.bus.client import config
from k2.bus.stats import ConsumerStats, PartitionLag
from k2.bus.topics import (
    GapRecord,
    TradeBatch,
    batch_trades,
    decode_reject,
    decode_trades_message,
    record_gap,
    record_reject,
    rejects_topic,
    trades_topic,
)
from k2.hotstore.batch import Batch, Chunk
from k2.hotstore.schema import DATABASE
from k2.hotstore.store import HotStore
from k2.hotstore.writer import StoreWriter
from k2.records import Reject
from k2.settings import BusSettings, WriterSettings

log = logging.getLogger(__name__)
LAG_EVERY_S = 5.0
POLL_S = 0.05  # a wait for messages ends within this long: cuts are checked at least this often
LEAVE_S = 10.0  # at stop, how long to wait for the group to take the partitions back
CUTS_TABLE = f"{DATABASE}.bus_cuts"
CUTS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.uint32()),
        ("first_offset", pa.int64()),
        ("last_offset", pa.int64()),
        ("member", pa.string()),
    ]
)


@dataclass
class _Pending:
    """A partition's messages since its last cut."""

    first: int
    last: int = -1
    started: float = field(default_factory=time.monotonic)
    batch: Batch = field(default_factory=Batch)


def token(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}/{partition}/{first}-{last}"


def read_cut(store: HotStore, topic: str, partition: int) -> tuple[int, int] | None:
    rows = store.rows(
        f"SELECT argMax(first_offset, at), argMax(last_offset, at) FROM {CUTS_TABLE} "
        "WHERE topic = {t:String} AND partition = {p:UInt32} HAVING count() > 0",
        {"t": topic, "p": partition},
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


class IngestMember:
    """One consumer-group member; `run` it on a thread of its own."""

    def __init__(
        self,
        bus: BusSettings,
        writer_settings: WriterSettings,
        store: HotStore,
        writer: StoreWriter,
        member: str,
    ) -> None:
        from confluent_kafka import Consumer

        self._bus, self._settings = bus, writer_settings
        self._store, self._writer = store, writer
        self.stats = ConsumerStats(member)
        self._trades = trades_topic(bus.topic_prefix)
        self._rejects = rejects_topic(bus.topic_prefix)
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._forced: dict[tuple[str, int], int] = {}  # a replayed cut's last offset
        self._next: dict[tuple[str, int], int] = {}  # offset after the last cut written
        self._stop = threading.Event()
        self._leaving = False  # the last cut is written and committed
        self._consumer = Consumer(
            config(
                bus,
                **{
                    "group.id": bus.group_id,
                    "client.id": member,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "session.timeout.ms": bus.session_timeout_ms,
                    "heartbeat.interval.ms": max(500, bus.session_timeout_ms // 5),
                    "max.poll.interval.ms": max(300_000, bus.session_timeout_ms),
                    # answer a fetch as soon as there is data, and within 50 ms when there is none
                    "fetch.wait.max.ms": 50,
                    "queued.max.messages.kbytes": bus.consumer_queue_kbytes,
                },
            )
        )

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until `stop`; then write what was read, commit, and leave the group."""
        self._stop = stop
        self._consumer.subscribe(
            [self._trades, self._rejects],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        lag_at = 0.0
        try:
            while not stop.is_set():
                for msg in self._fetch():
                    error = msg.error()
                    if error is not None:  # the client retries by itself: say so, go on
                        log.warning("ingest %s: %s", self.stats.member, error.str())
                        continue
                    self._add(msg)
                self._cut(final=False)
                if time.monotonic() - lag_at >= LAG_EVERY_S:
                    lag_at = time.monotonic()
                    self._check_lag()
            self._cut(final=True)
        finally:
            self._commit_sync()
            self._leave()

    def _leave(self) -> None:
        """Hand the partitions back, then close. librdkafka's close() can wedge when it has a
        revocation of its own to run (a member fenced during a broker outage, say), so the
        partitions go back first, by unsubscribing and polling until none is left."""
        self._leaving = True
        try:
            self._consumer.unsubscribe()
            deadline = time.monotonic() + LEAVE_S
            while self._consumer.assignment() and time.monotonic() < deadline:
                self._consumer.consume(5_000, POLL_S)  # read after the last cut: not written
        except Exception as err:  # noqa: BLE001 - stopping: close() still runs
            log.warning("ingest %s: leaving the group: %s", self.stats.member, err)
        self._consumer.close()

    def _add(self, msg: Any) -> None:
        tp = (msg.topic(), msg.partition())
        offset = msg.offset()
        forced = self._forced.get(tp)
        if forced is not None and offset > forced:  # the range is gone (retention, compaction)
            log.warning("ingest: %s[%d] no longer holds offset %d to replay", *tp, forced)
            del self._forced[tp]
        pending = self._pending.get(tp)
        if pending is None:
            pending = self._pending[tp] = _Pending(offset, started=self._waiting_since(msg))
        pending.last = offset
        self.stats.messages += 1
        batch, value = pending.batch, msg.value() or b""
        try:
            if tp[0] == self._rejects:
                batch.rejects.append(record_reject(decode_reject(value)))
            else:
                message = decode_trades_message(value)
                if isinstance(message, TradeBatch):
                    received, accepted = batch_trades(message)
                    ids = None if len(accepted) == len(received) else {id(t) for t in accepted}
                    batch.chunks.append(Chunk(received, ids, message.conn_id, message.source))
                    batch.rows += len(received)
                elif isinstance(message, GapRecord):
                    batch.gaps.append(record_gap(message))
        except msgspec.DecodeError as err:
            self.stats.undecodable += 1
            self.stats.last_undecodable_at = time.time()
            batch.rejects.append(
                Reject(
                    "bus",
                    f"not a K2 message at {tp[0]}[{tp[1]}] offset {offset}: {err}",
                    value,
                    time.time_ns(),
                    self.stats.member,
                )
            )
        if self._forced.get(tp) == offset:
            self._write([tp])

    def _waiting_since(self, msg: Any) -> float:
        """When (monotonic) this message began to wait for its batch: when it was produced, by
        its timestamp, so that what arrived during the last write is cut as soon as it is due,
        not a whole interval after it was read. A producer clock ahead of this one counts from
        now; one behind counts at most one interval back."""
        now = time.monotonic()
        kind, at_ms = msg.timestamp()
        if kind == 0 or at_ms <= 0:  # TIMESTAMP_NOT_AVAILABLE
            return now
        interval = self._settings.batch_interval_ms / 1000
        age = max(0.0, time.time() - float(at_ms) / 1000)
        return now - min(interval, age)

    def _fetch(self) -> list[Any]:
        """The next messages. With a batch pending, those that come until it is due (a consume
        call for many waits out its whole timeout unless it fills); with none, the first to come
        within POLL_S and whatever the client holds with it."""
        if self._pending:
            pending: list[Any] = self._consumer.consume(5_000, self._poll_s())
            return pending
        first = self._consumer.poll(POLL_S)
        return [] if first is None else [first, *self._consumer.consume(5_000, 0)]

    def _poll_s(self) -> float:
        """How long the next consume call may wait: until the first batch is due, at most
        POLL_S. (A replayed cut is not cut by time: it ends at its recorded offset.)"""
        started = [p.started for tp, p in self._pending.items() if tp not in self._forced]
        if not started:
            return POLL_S
        due = min(started) + self._settings.batch_interval_ms / 1000
        return min(POLL_S, max(0.001, due - time.monotonic()))

    def _cut(self, final: bool) -> None:
        now = time.monotonic()
        interval = self._settings.batch_interval_ms / 1000
        due = [
            tp
            for tp, pending in self._pending.items()
            # a replay ends where the recorded cut did, never elsewhere
            if tp not in self._forced
            and (
                final
                or pending.batch.rows >= self._settings.batch_rows
                or now - pending.started >= interval
            )
        ]
        if due:
            self._write(due)

    def _write(self, tps: list[tuple[str, int]]) -> bool:
        """Cut these partitions' pending messages into one batch each and write them: the cuts
        first (one insert for all), so whoever replays a range cuts it exactly so."""
        cuts = pa.Table.from_pylist(
            [
                {
                    "topic": topic,
                    "partition": partition,
                    "first_offset": self._pending[topic, partition].first,
                    "last_offset": self._pending[topic, partition].last,
                    "member": self.stats.member,
                }
                for topic, partition in tps
            ],
            schema=CUTS_SCHEMA,
        )
        if not self._writer.retrying(
            lambda: self._store.insert_arrow(CUTS_TABLE, cuts, {"async_insert": 0}), self._stop
        ):
            return False
        for tp in tps:
            pending = self._pending[tp]
            if not self._writer.commit_batch(
                pending.batch, token(*tp, pending.first, pending.last), self._stop
            ):
                return False  # stopping: the batch stays pending, and is not committed
            del self._pending[tp]
            self._forced.pop(tp, None)
            self.stats.batches += 1
            self._next[tp] = pending.last + 1
            self._commit(tp)
        return True

    def _commit(self, tp: tuple[str, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            self._consumer.commit(
                offsets=[TopicPartition(tp[0], tp[1], self._next[tp])], asynchronous=True
            )
        except KafkaException as err:  # the broker is away: the recorded cut covers it
            log.warning("ingest %s: cannot commit %s[%d]: %s", self.stats.member, *tp, err)

    def _commit_sync(self, tps: list[tuple[str, int]] | None = None) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        offsets = [
            TopicPartition(t, p, o)
            for (t, p), o in self._next.items()
            if tps is None or (t, p) in tps
        ]
        if offsets:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as err:  # the recorded cuts cover it
                log.warning("ingest %s: cannot commit offsets: %s", self.stats.member, err)

    # -- rebalances -------------------------------------------------------------------------------
    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        self.stats.rebalances += 1
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, 30)
        }
        for tp in partitions:
            key = (tp.topic, tp.partition)
            cut = read_cut(self._store, tp.topic, tp.partition)
            offset = committed.get(key, -1001)
            if cut is not None and (offset < 0 or offset <= cut[1]):
                # The last cut may be in the store only in part: replay exactly it.
                tp.offset = cut[0]
                self._forced[key] = cut[1]
                self.stats.redelivered_batches += 1
                log.info(
                    "ingest %s: %s[%d] resumes at the recorded cut %d-%d",
                    self.stats.member,
                    tp.topic,
                    tp.partition,
                    cut[0],
                    cut[1],
                )
            elif offset >= 0:
                tp.offset = offset
        consumer.assign(partitions)
        self.stats.assigned = sorted((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        """Partitions handed back: commit what was written of them, forget what was read. The
        client unassigns them itself once this returns."""
        gone = [(tp.topic, tp.partition) for tp in partitions]
        if not self._leaving:  # leaving, the last commit is made
            self._commit_sync(gone)
        self._forget(gone)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        """Partitions taken away (this member missed its session): no commit can land now, and the
        recorded cuts cover what was written."""
        log.warning(
            "ingest %s: lost %d partitions to the group", self.stats.member, len(partitions)
        )
        self._forget([(tp.topic, tp.partition) for tp in partitions])

    def _forget(self, gone: list[tuple[str, int]]) -> None:
        for key in gone:
            # read, not cut: the next owner reads these messages again from the committed offset
            self._pending.pop(key, None)
            self._forced.pop(key, None)
            self._next.pop(key, None)
        self.stats.assigned = [tp for tp in self.stats.assigned if tp not in gone]

    def _check_lag(self) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        lags = []
        try:
            for topic, partition in self.stats.assigned:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=1, cached=False
                )
                at = self._next.get((topic, partition), -1)
                if at < 0:
                    position = self._consumer.position([TopicPartition(topic, partition)])
                    at = position[0].offset if position and position[0].offset >= 0 else high
                lags.append(PartitionLag(topic, partition, at, high, max(0, high - at)))
        except KafkaException as err:  # the last figures stand until the broker answers
            log.warning("ingest %s: cannot read the partitions' ends: %s", self.stats.member, err)
            return
        self.stats.lag = lags
