"""The cluster shape's bus on a real broker (Tansu, its own process): feeds publish, ingest members
write the hot store exactly once, through redelivery, replays and rebalances."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from k2.archive.status import ArchiveStatus
from k2.bus.client import ensure_topics
from k2.bus.consumer import IngestMember, read_cut
from k2.bus.producer import BusSink
from k2.bus.resume import resume_from_bus
from k2.bus.topics import status_topic, trades_topic
from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.writer import StoreWriter
from k2.settings import BusSettings, HealthSettings, HotStoreSettings, WriterSettings
from tests.bus_support import Broker, free_port
from tests.hot_support import assert_candles_equal, read_silver
from tests.integration.test_feed_sessions import faults
from tests.support import SMALL, capture, truth_by_key

pytestmark = pytest.mark.integration
WRITER = WriterSettings(batch_rows=2_000, batch_interval_ms=100)


def assert_silver_is_the_tape(silver: dict, sim) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Silver holds every trade the simulator made, once, exactly (canonical symbols aside)."""
    truth = truth_by_key(sim)
    stored = {k: v[1:] for k, v in silver.items()}
    missing, extra = set(truth) - set(stored), set(stored) - set(truth)
    assert not missing and not extra, (len(missing), sorted(missing)[:3], sorted(extra)[:3])
    wrong = [k for k in truth if stored[k] != truth[k]]
    assert not wrong, [(k, stored[k], truth[k]) for k in wrong[:2]]


def publish(bus: BusSettings, fault_names: tuple[str, ...], seconds: float = 5.0, during=None):  # type: ignore[no-untyped-def]
    partitions = ensure_topics(bus)

    async def run():  # type: ignore[no-untyped-def]
        sink = BusSink(bus, partitions)
        cap = await capture(
            SMALL, faults(*fault_names), fault_seconds=seconds, sink=sink, during=during
        )
        assert await sink.close(time.monotonic() + 30) == 0
        return cap, sink

    return asyncio.run(run())


class Members:
    """Ingest members on threads, sharing one writer and store (as in one k2 ingest process)."""

    def __init__(self, bus: BusSettings, store: ClickHouseStore) -> None:
        self.bus, self.store = bus, store
        self.writer = StoreWriter(store, WRITER, 0)
        self.running: list[tuple[IngestMember, threading.Thread, threading.Event]] = []

    def start(self, name: str) -> IngestMember:
        member = IngestMember(self.bus, WRITER, self.store, self.writer, name)
        stop = threading.Event()
        thread = threading.Thread(target=member.run, args=(stop,), name=name)
        thread.start()
        self.running.append((member, thread, stop))
        return member

    def stop(self, member: IngestMember | None = None) -> None:
        for m, thread, stop in list(self.running):
            if member is None or m is member:
                stop.set()
                thread.join(60)
                assert not thread.is_alive()
                self.running.remove((m, thread, stop))


async def writing(member: IngestMember) -> None:
    """Until `member` (on its thread) has written its first batch."""
    while not member.stats.batches:  # noqa: ASYNC110 - a thread's counter
        await asyncio.sleep(0.1)


def end_offsets(bus: BusSettings) -> dict[tuple[str, int], int]:
    c = Consumer({"bootstrap.servers": bus.bootstrap_servers, "group.id": "probe"})
    try:
        out = {}
        for topic, n in ensure_topics(bus).items():
            if topic == status_topic(bus.topic_prefix):
                continue  # heartbeats: no consumer group reads them
            for p in range(n):
                out[(topic, p)] = c.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
        return out
    finally:
        c.close()


def wait_caught_up(bus: BusSettings, timeout: float = 90) -> None:
    """Until the group has committed every partition's end (each batch written first)."""
    ends = end_offsets(bus)
    probe = Consumer({"bootstrap.servers": bus.bootstrap_servers, "group.id": bus.group_id})
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = probe.committed([TopicPartition(t, p) for (t, p) in ends], 10)
            done = {(tp.topic, tp.partition): tp.offset for tp in got}
            if all(done[tp] >= end for tp, end in ends.items() if end > 0):
                return
            time.sleep(0.2)
    finally:
        probe.close()
    raise AssertionError(f"ingest did not catch up: {ends} vs {done}")


def test_feeds_through_the_broker_into_silver_exactly_with_faults(
    broker: Broker, tmp_path: Path
) -> None:
    bus = broker.settings()
    ensure_topics(bus)
    store = ClickHouseStore.at(tmp_path / "hot")
    try:
        migrate.apply(store, HotStoreSettings())
        group = Members(bus, store)
        first = group.start("m1")
        joined: list[IngestMember] = []

        async def second_joins(_cap) -> None:  # type: ignore[no-untyped-def]
            await writing(first)
            joined.append(group.start("m2"))  # mid-run: a rebalance moves partitions

        cap, sink = publish(
            bus, ("disconnect", "gaps", "duplicates", "reorder"), during=second_joins
        )
        assert sink.stats.delivered == sink.stats.messages > 0
        assert sink.stats.delivery_errors == 0
        second = joined[0]
        wait_caught_up(bus)
        group.stop()
        assert first.stats.rebalances >= 2 and second.stats.batches > 0
        silver = read_silver(store)
        assert_silver_is_the_tape(silver, cap.sim)
        assert_candles_equal(store, silver)
    finally:
        store.close()


def test_a_replayed_cut_writes_nothing_twice_and_the_feed_resumes_from_the_bus(
    broker: Broker, tmp_path: Path
) -> None:
    bus = broker.settings()
    cap, _sink = publish(bus, ("gaps",), seconds=3)
    topic = trades_topic(bus.topic_prefix)
    store = ClickHouseStore.at(tmp_path / "hot")
    try:
        migrate.apply(store, HotStoreSettings())
        group = Members(bus, store)
        group.start("m1")
        wait_caught_up(bus)
        group.stop()
        before = read_silver(store)
        assert_silver_is_the_tape(before, cap.sim)
        # A crash after a batch reached the store but before its offset was committed: the group's
        # offset goes back to the start of the last cut of a partition.
        partition = max(
            range(bus.partitions), key=lambda p: (read_cut(store, topic, p) or (0, 0))[1]
        )
        first, last = read_cut(store, topic, partition) or (0, 0)
        assert last > first
        c = Consumer({"bootstrap.servers": bus.bootstrap_servers, "group.id": bus.group_id})
        c.commit(offsets=[TopicPartition(topic, partition, first)], asynchronous=False)
        c.close()
        again = group.start("m1-restarted")
        wait_caught_up(bus)
        group.stop()
        assert again.stats.redelivered_batches >= 1
        assert read_silver(store) == before
        assert_candles_equal(store, before)
    finally:
        store.close()
    # The feed's restart point is the bus: every symbol's highest id published.
    truth = truth_by_key(cap.sim)
    for venue, symbols in SMALL.items():
        from k2.exchanges import make_adapter

        state = resume_from_bus(
            bus, topic, bus.partitions, venue, symbols, 100, make_adapter(venue).contiguous_ids
        )
        for symbol in symbols:
            top = max(k[2] for k in truth if k[:2] == (venue, symbol))
            assert state.cursors[venue][symbol].high == top, (venue, symbol)
        assert not state.pending.get(venue)


def test_health_reads_each_process_by_its_heartbeat_and_the_groups_lag(broker: Broker) -> None:
    from confluent_kafka import Producer

    from k2.bus.stats import ProducerStats
    from k2.bus.status import Heartbeats, read_bus
    from k2.observe.health import FAIL, OK, HealthInputs, evaluate

    bus = broker.settings(partitions=2)
    ensure_topics(bus)
    view = read_bus(bus)
    assert not view.error and not view.processes
    assert {(p.topic, p.lag) for p in view.lag} == {(trades_topic(bus.topic_prefix), 0)} | {
        (f"{bus.topic_prefix}.rejects.v1", 0)
    }
    producer = Producer({"bootstrap.servers": bus.bootstrap_servers})
    for i in range(7):  # seven messages nobody has read
        producer.produce(trades_topic(bus.topic_prefix), b"x", partition=i % 2)
        # one record per batch: Tansu's high watermark leaves out all but the first record of a
        # partition's last batch (Kafka's does not)
        assert producer.flush(10) == 0

    stats = ProducerStats(messages=5, delivered=5, buffer_limit=100)
    beats = [
        Heartbeats(bus, "feed", f"venue_{i}", lambda: {"producer": stats}, 0.2) for i in (1, 2)
    ]
    time.sleep(1.0)
    stats.overflows = 1  # later heartbeats carry the later counters
    beats[1].close()  # venue_2's process stops cleanly; venue_1's keeps beating
    time.sleep(0.5)
    view = read_bus(bus)
    beats[0].close()
    assert not view.error
    by_name = {b.process: b for b in view.processes}
    assert set(by_name) == {beats[0].process, beats[1].process}
    assert by_name[beats[1].process].stopped and not by_name[beats[0].process].stopped
    assert by_name[beats[1].process].producer == stats
    assert sum(p.lag for p in view.lag) == 7, view.lag
    assert all(p.committed == -1 for p in view.lag)

    inputs = HealthInputs(time.time(), False, [], Path("."), ArchiveStatus(), bus=view)
    checks = {c.name: c for c in evaluate(inputs, HealthSettings())}
    assert checks["bus broker"].status == OK
    assert "7 messages to read" in checks["bus lag"].detail
    assert "4 of 4 partitions never committed" in checks["bus lag"].detail
    assert checks[beats[0].process].status == OK
    assert "stopped cleanly" in checks[beats[1].process].detail
    later = HealthInputs(time.time() + 120, False, [], Path("."), ArchiveStatus(), bus=view)
    silent = {c.name: c for c in evaluate(later, HealthSettings())}[beats[0].process]
    assert silent.status == FAIL and "no heartbeat for 2 min" in silent.detail


def test_health_says_when_the_broker_cannot_be_read(broker: Broker) -> None:
    from k2.bus.status import read_bus

    bus = broker.settings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    view = read_bus(bus, timeout_s=2.0)
    assert view.error and time.monotonic() - started < 10


def test_a_broker_that_answers_nothing_counts_as_down_and_then_as_back(broker: Broker) -> None:
    """A hung broker keeps its connections open and raises no client error for a minute; a
    producer whose messages wait unacknowledged for ACK_STALL_S says the broker is down."""
    from k2.bus.producer import ACK_STALL_S
    from k2.records import Reject

    bus = broker.settings()
    partitions = ensure_topics(bus)

    sink = BusSink(bus, partitions)
    try:
        reject = Reject("binance", "a test", b"{}", time.time_ns(), "BTCUSDT")
        asyncio.run(sink.reject(reject))
        deadline = time.monotonic() + 10
        while sink.stats.delivered < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sink.stats.delivered == 1 and not sink.stats.brokers_down_since
        broker.pause()
        paused = time.monotonic()
        try:
            asyncio.run(sink.reject(reject))
            while not sink.stats.brokers_down_since and time.monotonic() - paused < 30:
                time.sleep(0.2)
            seen = time.monotonic() - paused
            assert sink.stats.brokers_down_since, "a hung broker never counted as down"
            assert ACK_STALL_S <= seen < ACK_STALL_S + 5, seen
        finally:
            broker.resume()
        while sink.stats.brokers_down_since and time.monotonic() - paused < 90:
            time.sleep(0.2)
        assert not sink.stats.brokers_down_since and sink.stats.delivered == 2
    finally:
        assert asyncio.run(sink.close(time.monotonic() + 30)) == 0
