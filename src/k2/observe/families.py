"""Metric families built from a stage's own stats on each scrape: the writer's, the archive's and
the bus's (`metrics.K2Collector` adds the feeds', the hot store's and the process's)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from k2.archive.status import FLOW_NAMES, ArchiveStatus
from k2.archive.tables import TABLES
from k2.bus.stats import ConsumerStats, ProducerStats
from k2.hotstore.stats import WriterStats


def family(
    kind: type[GaugeMetricFamily | CounterMetricFamily],
    name: str,
    doc: str,
    labels: Sequence[str],
    samples: Iterable[tuple[Sequence[str], float]],
) -> GaugeMetricFamily | CounterMetricFamily:
    family = kind(name, doc, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def gauge(
    name: str, doc: str, labels: Sequence[str], samples: Iterable[tuple[Sequence[str], float]]
) -> Metric:
    return family(GaugeMetricFamily, name, doc, labels, samples)


def counter(
    name: str, doc: str, labels: Sequence[str], samples: Iterable[tuple[Sequence[str], float]]
) -> Metric:
    return family(CounterMetricFamily, name, doc, labels, samples)


def writer_families(w: WriterStats) -> Iterator[Metric]:
    yield counter(
        "k2_writer_rows_total",
        "Rows written per hot table by this process.",
        ["table"],
        [((t,), n) for t, n in sorted(w.rows.items())],
    )
    yield counter("k2_writer_batches_total", "Insert batches committed.", [], [((), w.batches)])
    yield counter(
        "k2_writer_flush_failures_total",
        "Insert attempts the hot store failed as unavailable (retried).",
        [],
        [((), w.flush_failures)],
    )
    yield counter(
        "k2_writer_backpressure_seconds_total",
        "Time feeds spent waiting for the writer.",
        [],
        [((), w.backpressure_s)],
    )
    yield gauge(
        "k2_writer_pending_rows",
        "Rows accepted from the feeds, not yet written.",
        [],
        [((), w.pending)],
    )
    yield gauge(
        "k2_writer_store_up",
        "0 while the hot store is unavailable for inserts (the writer waits), else 1.",
        [],
        [((), 0 if w.store_down_since else 1)],
    )
    yield gauge(
        "k2_writer_store_down_seconds",
        "How long the hot store has been unavailable (0 while it works).",
        [],
        [((), time.time() - w.store_down_since if w.store_down_since else 0.0)],
    )
    yield counter(
        "k2_writer_refused_rows_total",
        "Trades the hot store refused (quarantined as rejects).",
        [],
        [((), w.refused_rows)],
    )
    yield counter(
        "k2_writer_dropped_records_total",
        "Gap or reject records the hot store refused (logged).",
        [],
        [((), w.dropped_records)],
    )
    yield gauge(
        "k2_writer_last_flush_timestamp_seconds",
        "When the writer last committed a batch.",
        [],
        [((), w.last_flush_at)],
    )


def archive_families(st: ArchiveStatus) -> Iterator[Metric]:
    now = time.time()
    tables = [(spec, st.tables[spec.name]) for spec in TABLES]
    table = ["table"]
    yield counter(
        "k2_offload_rows_total",
        "Rows archived by this process.",
        table,
        [((s.name,), t.rows) for s, t in tables],
    )
    yield counter(
        "k2_offload_failures_total",
        "Failed offloads of the table (all processes, from the ops log).",
        table,
        [((s.name,), t.failures) for s, t in tables],
    )
    yield gauge(
        "k2_offload_consecutive_failures",
        "Failed offloads of the table since its last success.",
        table,
        [((s.name,), t.consecutive_failures) for s, t in tables],
    )
    yield gauge(
        "k2_offload_last_success_timestamp_seconds",
        "When the table was last offloaded (0: never).",
        table,
        [((s.name,), t.last_success) for s, t in tables],
    )
    yield gauge(
        "k2_offload_lag_seconds",
        "Now minus the newest event (candles: window end) archived.",
        table,
        [((s.name,), now - t.newest_event_ns / 1e9) for s, t in tables if t.newest_event_ns],
    )
    yield gauge(
        "k2_offload_lag_allowance_seconds",
        "Lag the table has by design: a candle table archives finished windows only.",
        table,
        [((s.name,), s.window_seconds) for s, _ in tables],
    )
    yield gauge(
        "k2_offload_watermark_age_seconds",
        "Now minus the table's archive watermark.",
        table,
        [((s.name,), now - s.watermark_time(t.watermark)) for s, t in tables if t.watermark],
    )
    yield gauge(
        "k2_offload_last_cycle_duration_seconds",
        "Duration of the last offload cycle.",
        [],
        [((), st.cycle_seconds)],
    )
    yield gauge(
        "k2_offload_running_seconds",
        "How long the offload cycle now running has run (0: none is running); an object store "
        "that stops answering holds a cycle here.",
        [],
        [((), now - st.cycle_started if st.cycle_started else 0.0)],
    )
    yield counter(
        "k2_offload_cycles_total", "Offload cycles run by this process.", [], [((), st.cycles)]
    )
    yield counter(
        "k2_flow_runs_skipped_total",
        "Flow runs skipped because another run was in progress.",
        ["flow"],
        [((f,), st.skipped.get(f, 0)) for f in FLOW_NAMES],
    )
    results = sorted(st.maintenance.items())
    for name, doc, attr in (
        (
            "k2_maintenance_files_before",
            "Data files before the last maintenance run.",
            "files_before",
        ),
        (
            "k2_maintenance_files_after",
            "Data files after the last maintenance run.",
            "files_after",
        ),
        (
            "k2_maintenance_snapshots_expired",
            "Snapshots expired by the last maintenance run.",
            "snapshots_expired",
        ),
        (
            "k2_maintenance_orphans_removed",
            "Orphan files removed by the last maintenance run.",
            "orphans_removed",
        ),
        (
            "k2_maintenance_duration_seconds",
            "Duration of the last maintenance run of the table.",
            "seconds",
        ),
    ):
        yield gauge(name, doc, table, [((n,), getattr(r, attr)) for n, r in results])
    yield gauge(
        "k2_maintenance_last_run_timestamp_seconds",
        "When maintenance last ran (0: never).",
        [],
        [((), st.maintenance_at)],
    )
    yield gauge(
        "k2_maintenance_last_success_timestamp_seconds",
        "When maintenance last succeeded (0: never).",
        [],
        [((), st.maintenance_success_at)],
    )
    yield gauge(
        "k2_maintenance_last_run_ok",
        "1 if the last maintenance run succeeded for every table.",
        [],
        [((), st.maintenance_ok)],
    )
    yield counter(
        "k2_maintenance_failures_total",
        "Maintenance runs with a failed table, in this process.",
        [],
        [((), st.maintenance_failures)],
    )
    checks = sorted(st.reconcile.items())
    yield gauge(
        "k2_reconcile_difference_rows",
        "Rows by which hot and archive differ (last run, all days).",
        table,
        [((n,), sum(abs(c.difference) for c in cs)) for n, cs in checks],
    )
    yield gauge(
        "k2_reconcile_checksum_mismatches",
        "Days whose content checksums differ (last run).",
        table,
        [((n,), sum(c.hot_checksum != c.archive_checksum for c in cs)) for n, cs in checks],
    )
    yield gauge(
        "k2_reconcile_days_checked",
        "Days compared by the last run.",
        table,
        [((n,), len(cs)) for n, cs in checks],
    )
    yield gauge(
        "k2_reconcile_last_run_timestamp_seconds",
        "When reconcile last ran (0: never).",
        [],
        [((), st.reconcile_at)],
    )


def bus_families(
    producer: ProducerStats | None, consumers: list[ConsumerStats]
) -> Iterator[Metric]:
    """The cluster shape's bus: `k2 feed`'s producer and `k2 ingest`'s consumer-group members."""
    if producer is not None:
        p = producer
        for name, doc, value in (
            ("k2_bus_producer_messages_total", "Messages handed to the producer.", p.messages),
            ("k2_bus_producer_delivered_total", "Messages the broker acknowledged.", p.delivered),
            (
                "k2_bus_producer_delivery_errors_total",
                "Messages the broker refused or the producer gave up.",
                p.delivery_errors,
            ),
            (
                "k2_bus_producer_overflows_total",
                "Times the producer's buffer was full and capture waited.",
                p.overflows,
            ),
            (
                "k2_bus_producer_backpressure_seconds_total",
                "Time capture waited for room in the producer's buffer.",
                p.backpressure_s,
            ),
        ):
            yield counter(name, doc, [], [((), value)])
        yield gauge(
            "k2_bus_producer_buffered_messages",
            "Messages waiting in the producer's buffer for the broker's acknowledgement.",
            [],
            [((), p.buffered)],
        )
        yield gauge(
            "k2_bus_producer_buffer_limit_messages",
            "The producer buffer's size (bus.producer_buffer_messages).",
            [],
            [((), p.buffer_limit)],
        )
        yield gauge(
            "k2_bus_broker_up",
            "1 while the producer reaches the broker, 0 while it does not.",
            [],
            [((), 0 if p.brokers_down_since else 1)],
        )
        yield gauge(
            "k2_bus_producer_fatal",
            "1 if the producer failed for good (the process stops).",
            [],
            [((), 1 if p.fatal else 0)],
        )
    if consumers:
        member = ["member"]
        for name, doc, attr in (
            ("k2_bus_consumer_batches_total", "Batches written to the hot store.", "batches"),
            ("k2_bus_consumer_messages_total", "Messages read from the bus.", "messages"),
            (
                "k2_bus_consumer_undecodable_total",
                "Messages that were not K2's (sent to rejects).",
                "undecodable",
            ),
            (
                "k2_bus_consumer_replayed_batches_total",
                "Recorded cuts replayed after a restart or a partition move.",
                "redelivered_batches",
            ),
            ("k2_bus_consumer_rebalances_total", "Partition assignments.", "rebalances"),
        ):
            yield counter(name, doc, member, [((c.member,), getattr(c, attr)) for c in consumers])
        yield gauge(
            "k2_bus_consumer_lag_messages",
            "Messages in a partition not yet written to the hot store.",
            ["member", "topic", "partition"],
            [
                ((c.member, lag.topic, str(lag.partition)), lag.lag)
                for c in consumers
                for lag in c.lag
            ],
        )
        yield gauge(
            "k2_bus_consumer_assigned_partitions",
            "Partitions assigned to each member.",
            member,
            [((c.member,), len(c.assigned)) for c in consumers],
        )
