"""Heartbeats: what each `k2 feed` and `k2 ingest` process tells `k2 health` through the bus.

The cluster shape's processes run apart, often on other hosts, so `k2 health` cannot ask them. Each
one publishes its counters to `<prefix>.status.v1` (one partition) every `EVERY_S`, keyed by the
process's name, and a last record when it stops cleanly. `k2 health` reads the partition's tail and
judges each process by its newest record (observe/health.py, `_bus`): one that has not reported
for `health.bus_silent_s` was killed or is stuck. A heartbeat is best effort: while the broker is
down it waits in a small buffer or is skipped, never holding a trade back.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from k2.bus.client import config
from k2.bus.stats import ConsumerStats, PartitionLag, ProducerStats
from k2.bus.topics import rejects_topic, status_topic, trades_topic
from k2.hotstore.stats import WriterStats
from k2.ingest.stats import FeedStats
from k2.settings import BusSettings

if TYPE_CHECKING:
    from k2.bus.producer import BusSink
    from k2.ingest.feed import Feed

log = logging.getLogger(__name__)
EVERY_S = 10.0
TAIL = 5_000  # heartbeats read back: at one per process per EVERY_S, hours of a large install


class FeedReport(msgspec.Struct):
    """A feed's counters, with its monotonic times as durations (they mean nothing elsewhere)."""

    stats: FeedStats
    live_for: float
    down_for: float
    open_gaps: int  # gaps being repaired

    def rebased(self, age_s: float) -> FeedStats:
        """The stats as seen by this process, `age_s` after they were sent."""
        s = self.stats
        now = time.monotonic()
        s.connected_since = now - self.live_for - age_s if self.live_for else 0.0
        s.down_since = now - self.down_for - age_s if self.down_for else 0.0
        return s


class Heartbeat(msgspec.Struct):
    process: str  # the key: "<role> <host> <what>", stable across restarts
    role: str  # feed | ingest
    host: str
    pid: int
    started_at: float  # UNIX time
    sent_at: float
    stopped: bool = False  # the process's last record: it stopped cleanly
    producer: ProducerStats | None = None
    feeds: list[FeedReport] = []
    consumers: list[ConsumerStats] = []
    writer: WriterStats | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Heartbeat).decode


class Heartbeats:
    """Publishes this process's heartbeat every `every_s` on a thread of its own."""

    def __init__(
        self,
        settings: BusSettings,
        role: str,
        what: str,
        snapshot: Callable[[], dict[str, Any]],
        every_s: float = EVERY_S,
    ) -> None:
        from confluent_kafka import Producer

        self._topic = status_topic(settings.topic_prefix)
        self._snapshot = snapshot
        self._every = every_s
        host = socket.gethostname()
        self._base: dict[str, Any] = {
            "process": f"{role} {host} {what}",
            "role": role,
            "host": host,
            "pid": os.getpid(),
            "started_at": time.time(),
        }
        self._producer = Producer(
            config(
                settings,
                **{
                    "acks": "all",
                    "linger.ms": 0,
                    "message.timeout.ms": 30_000,  # a stale heartbeat is worth nothing
                    "queue.buffering.max.messages": 100,
                },
            )
        )
        self._warned_at = -60.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="k2-heartbeat", daemon=True)
        self._thread.start()

    @property
    def process(self) -> str:
        return str(self._base["process"])

    def _send(self, stopped: bool = False) -> None:
        """One heartbeat; never raises (a heartbeat lost is a row gone stale, nothing worse)."""
        try:
            beat = Heartbeat(**self._base, sent_at=time.time(), stopped=stopped, **self._snapshot())
            value = _encode(beat)
        except RuntimeError:  # a counter dict grew while read (another thread): next time
            return
        try:
            self._producer.produce(self._topic, value, beat.process.encode())
            self._producer.poll(0)
        except BufferError:  # the broker has been away for a while: this one is skipped
            pass
        except Exception as err:  # noqa: BLE001 - e.g. a message over the broker's size limit
            if time.monotonic() - self._warned_at >= 60:
                self._warned_at = time.monotonic()
                log.warning("bus: cannot publish this process's heartbeat: %s", err)

    def _run(self) -> None:
        self._send()  # at once: k2 health knows the process from its start
        while not self._stop.wait(self._every):
            self._send()

    def close(self, timeout_s: float = 3.0) -> None:
        """Publish the last record (stopped) and wait up to `timeout_s` for the broker."""
        self._stop.set()
        self._thread.join()
        self._send(stopped=True)
        try:
            if self._producer.flush(timeout_s):
                log.warning("bus: the last heartbeat did not reach the broker")
        except Exception as err:  # noqa: BLE001 - stopping: say it and go on
            log.warning("bus: the last heartbeat did not reach the broker: %s", err)


@dataclass
class BusView:
    """What `k2 health` learns from the bus."""

    address: str
    error: str = ""  # why the broker could not be read ("" when it could)
    group: str = ""
    lag: list[PartitionLag] = field(default_factory=list)  # the group's, per partition
    processes: list[Heartbeat] = field(default_factory=list)  # the newest record of each
    partial: bool = False  # the status topic's tail was not read to its end in time


def read_bus(settings: BusSettings, timeout_s: float = 5.0) -> BusView:
    """The broker's answer, the ingest group's lag per partition, and every process's newest
    heartbeat."""
    from confluent_kafka import Consumer, KafkaException

    view = BusView(settings.bootstrap_servers, group=settings.group_id)
    consumer = Consumer(
        config(
            settings,
            **{
                "group.id": settings.group_id,  # committed() reads the group's offsets; never joins
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    try:
        topics = consumer.list_topics(timeout=timeout_s).topics
        view.lag = _lag(consumer, settings, topics, timeout_s)
        view.processes, view.partial = _heartbeats(consumer, settings, topics, timeout_s)
    except KafkaException as err:
        view.error = err.args[0].str() if err.args else str(err)
    finally:
        consumer.close()
    return view


def _lag(
    consumer: Any, settings: BusSettings, topics: dict[str, Any], timeout_s: float
) -> list[PartitionLag]:
    from confluent_kafka import OFFSET_INVALID, TopicPartition

    tps = [
        TopicPartition(name, p)
        for name in (trades_topic(settings.topic_prefix), rejects_topic(settings.topic_prefix))
        if name in topics
        for p in sorted(topics[name].partitions)
    ]
    if not tps:
        return []
    lags = []
    for tp in consumer.committed(tps, timeout=timeout_s):
        low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s, cached=False)
        at = tp.offset if tp.offset != OFFSET_INVALID and tp.offset >= 0 else -1
        lags.append(PartitionLag(tp.topic, tp.partition, at, high, high - (low if at < 0 else at)))
    return lags


def _heartbeats(
    consumer: Any, settings: BusSettings, topics: dict[str, Any], timeout_s: float
) -> tuple[list[Heartbeat], bool]:
    """Each process's newest heartbeat among the last TAIL, and whether the read was cut short."""
    from confluent_kafka import KafkaError, TopicPartition

    topic = status_topic(settings.topic_prefix)
    if topic not in topics:  # no process has started yet
        return [], False
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout_s)
    if high <= low:
        return [], False
    consumer.assign([TopicPartition(topic, 0, max(low, high - TAIL))])
    newest: dict[str, Heartbeat] = {}
    deadline = time.monotonic() + timeout_s
    done = False
    while not done and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            done = msg.error().code() == KafkaError._PARTITION_EOF
            continue
        done = msg.offset() >= high - 1
        try:
            beat = _decode(msg.value())
        except (msgspec.ValidationError, msgspec.DecodeError):
            continue  # not a heartbeat this version writes
        newest[beat.process] = beat
    return sorted(newest.values(), key=lambda b: b.process), not done


def feed_snapshot(sink: BusSink, feeds: Sequence[Feed]) -> dict[str, Any]:
    """A `k2 feed` process's heartbeat fields: its producer's and its feeds' counters."""
    return {
        "producer": sink.stats,
        "feeds": [
            FeedReport(f.stats, f.stats.live_for(), f.stats.down_for(), f.repairer.pending())
            for f in feeds
        ],
    }
