"""Metrics and health rules without a running process: histogram maths, naming, the judgements."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from k2.archive.maintenance import MaintenanceResult
from k2.archive.reconcile import DayCheck
from k2.archive.status import ArchiveStatus
from k2.bus.stats import ConsumerStats, PartitionLag, ProducerStats
from k2.bus.status import BusView, FeedReport, Heartbeat
from k2.hotstore.stats import WriterStats
from k2.ingest.stats import LIVE, RECONNECTING, FeedStats
from k2.observe.health import EXIT_CODES, FAIL, OK, WARN, HealthInputs, evaluate, overall, report
from k2.observe.metrics import build_registry, memory_limit_bytes, render
from k2.settings import HealthSettings, load_settings
from k2.telemetry import Histogram, PipelineMetrics

NOW = 1_800_000_000.0
METRIC_NAME = re.compile(
    r"^k2_(feed|bus|writer|hotstore|offload|flow|maintenance|reconcile|api|storage|process|build)_[a-z0-9_]+$"
)


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    h = Histogram("k2_test_seconds", "test", (0.1, 1.0))
    h.observe(0.1)  # on the bound: counts in le="0.1"
    h.observe(0.5)
    h.observe(5.0)
    (sample_family,) = [h.collect()]
    samples = {(s.name, s.labels.get("le")): s.value for s in sample_family.samples}
    assert samples[("k2_test_seconds_bucket", "0.1")] == 1
    assert samples[("k2_test_seconds_bucket", "1.0")] == 2
    assert samples[("k2_test_seconds_bucket", "+Inf")] == 3
    assert samples[("k2_test_seconds_count", None)] == 3
    assert samples[("k2_test_seconds_sum", None)] == pytest.approx(5.6)


def test_observe_many_equals_observing_one_at_a_time() -> None:
    values = np.random.default_rng(7).exponential(0.2, 10_000)
    one, many = (
        Histogram("k2_a_seconds", "a", (0.01, 0.1, 0.5, 1.0)),
        Histogram("k2_a_seconds", "a", (0.01, 0.1, 0.5, 1.0)),
    )
    for v in values:
        one.observe(float(v))
    many.observe_many(values[:3000])
    many.observe_many(values[3000:])
    assert [s.value for s in one.collect().samples] == pytest.approx(
        [s.value for s in many.collect().samples]
    )


def test_histogram_rejects_bad_buckets_and_labels() -> None:
    with pytest.raises(ValueError):
        Histogram("k2_x", "x", (1.0, 0.5))
    h = Histogram("k2_x", "x", (1.0,), ("table",))
    with pytest.raises(ValueError):
        h.observe(1.0)  # the label is missing


class FakeSource:
    """What `k2 up` exposes to the collector, with one of everything."""

    def __init__(self, tmp: Path) -> None:
        self.settings = load_settings(data_dir=tmp)
        self.started_at = time.time() - 60
        self.table_rows = {"silver_trades": 10}
        self.hot_newest = {"silver_trades": time.time()}
        self.metrics = PipelineMetrics()
        feed = FeedStats("venue_a")
        feed.set_state(LIVE)
        feed.symbol("AAA").trades = 3
        self.feeds = [(feed, 0)]
        self.writer = WriterStats(rows={"silver_trades": 10}, batches=1)
        self.status = ArchiveStatus()
        self.status.maintenance["silver_trades"] = MaintenanceResult("silver_trades", 3, 1)
        self.status.reconcile["silver_trades"] = [
            DayCheck("silver_trades", "2026-01-01", 5, 5, 1, 1)
        ]
        self.status.tables["silver_trades"].newest_event_ns = time.time_ns()
        self.status.tables["silver_trades"].watermark = time.time_ns() // 1000

    def feed_stats(self) -> list[tuple[FeedStats, int]]:
        return self.feeds

    def writer_stats(self) -> WriterStats:
        return self.writer

    def archive_status(self) -> ArchiveStatus:
        return self.status

    def bus_stats(self) -> tuple[ProducerStats, list[ConsumerStats]]:
        consumer = ConsumerStats("k2-ingest-1", assigned=[("k2.trades.v1", 0)])
        consumer.lag = [PartitionLag("k2.trades.v1", 0, 10, 25, 15)]
        return ProducerStats(messages=3, delivered=2, buffered=1, buffer_limit=100), [consumer]


def test_exported_names_follow_the_convention_and_parse(tmp_path: Path) -> None:
    src = FakeSource(tmp_path)
    committed = time.time_ns()
    src.metrics.batch_committed(10, 0.01, np.array([committed - 40_000_000] * 10), committed)
    src.metrics.api_request("/api/trades", 200, 0.003)
    families = list(text_string_to_metric_families(render(build_registry(src)).decode()))  # type: ignore[arg-type]
    names = {f.name for f in families}
    assert all(METRIC_NAME.match(n) for n in names), sorted(
        n for n in names if not METRIC_NAME.match(n)
    )
    by_name = {f.name: f for f in families}
    latency = {
        s.labels.get("le"): s.value
        for s in by_name["k2_writer_ingest_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert latency["0.025"] == 0 and latency["0.05"] == 10  # 40 ms each
    lag = by_name["k2_offload_lag_seconds"].samples
    assert [s.labels["table"] for s in lag] == [
        "silver_trades"
    ]  # tables never archived have no lag sample
    assert 0 <= lag[0].value < 5


def test_memory_limit_prefers_the_setting() -> None:
    assert memory_limit_bytes(123) == 123
    assert memory_limit_bytes(None) > 2**20


# The disk check reads the real disk; tests of the other checks keep it out of the verdict.
NOT_ABOUT_DISK = HealthSettings(disk_warn_pct=0.0, disk_fail_pct=0.0)


def _inputs(**kw: object) -> HealthInputs:
    base = {
        "now": NOW,
        "running": True,
        "venues": ["venue_a"],
        "data_dir": Path("."),
        "archive": ArchiveStatus(),
        "hot_rows": {},
        "hot_newest": {
            "silver_trades": NOW - 1,
            "bronze_trades_venue_a": NOW - 1,
            "ohlcv_1m": NOW - 30,
        },
        "started_at": NOW - 60,
    }
    base.update(kw)
    return HealthInputs(**base)  # type: ignore[arg-type]


def _by_name(inp: HealthInputs, **settings: object) -> dict[str, str]:
    return {c.name: c.status for c in evaluate(inp, HealthSettings(**settings))}  # type: ignore[arg-type]


def _live_feed(venue: str = "venue_a") -> FeedStats:
    feed = FeedStats(venue)
    feed.set_state(LIVE)
    return feed


def test_a_fresh_healthy_process_is_ok() -> None:
    checks = evaluate(_inputs(feeds=[(_live_feed(), 0)], writer=WriterStats()), NOT_ABOUT_DISK)
    assert overall(checks) == OK, [c for c in checks if c.status != OK]
    assert report(checks)["exit_code"] == 0


def test_a_feed_down_warns_then_fails() -> None:
    feed = FeedStats("venue_a")
    feed.set_state(LIVE)
    feed.set_state(RECONNECTING, "connection refused")
    assert _by_name(_inputs(feeds=[(feed, 0)]))["feed venue_a"] == WARN
    feed.down_since -= 120  # down for two minutes
    assert _by_name(_inputs(feeds=[(feed, 0)]))["feed venue_a"] == FAIL
    assert EXIT_CODES[overall(evaluate(_inputs(feeds=[(feed, 0)]), NOT_ABOUT_DISK))] == 2


def test_stopped_process_fails_feeds_and_judges_the_rest_from_data() -> None:
    names = _by_name(_inputs(running=False, started_at=0.0))
    assert names["feeds"] == FAIL
    assert names["fresh silver_trades"] == OK


def test_silent_symbol_warns() -> None:
    feed = _live_feed()
    feed.symbol("AAA").last_trade_recv_ns = int((NOW - 1000) * 1e9)
    assert _by_name(_inputs(feeds=[(feed, 0)]))["feed venue_a"] == WARN


def test_unrepaired_gaps_warn() -> None:
    feed = _live_feed()
    feed.gaps_found, feed.gaps_unrecoverable = 2, 1
    assert _by_name(_inputs(feeds=[(feed, 0)]))["gaps venue_a"] == WARN


def test_freshness_thresholds_and_missing_tables() -> None:
    names = _by_name(_inputs(hot_newest={"silver_trades": NOW - 100, "ohlcv_1m": NOW - 110}))
    assert names["fresh silver_trades"] == WARN
    assert names["fresh ohlcv_1m"] == OK  # the newest 1m window began up to a minute ago
    assert names["fresh bronze_trades_venue_a"] == FAIL  # no rows at all
    assert _by_name(_inputs(hot_newest={"silver_trades": NOW - 400}))["fresh silver_trades"] == FAIL


def test_offload_failures_and_lag() -> None:
    status = ArchiveStatus()
    silver = status.tables["silver_trades"]
    silver.newest_event_ns, silver.last_success = int((NOW - 60) * 1e9), NOW - 50
    assert _by_name(_inputs(archive=status))["offload silver_trades"] == OK
    silver.consecutive_failures, silver.last_error = 1, "disk full"
    assert _by_name(_inputs(archive=status))["offload silver_trades"] == WARN
    silver.consecutive_failures = 3
    assert _by_name(_inputs(archive=status))["offload silver_trades"] == FAIL
    silver.consecutive_failures = 0
    silver.newest_event_ns = int((NOW - 2000) * 1e9)
    assert _by_name(_inputs(archive=status))["offload silver_trades"] == WARN
    day = status.tables["ohlcv_1d"]  # a day candle archived at the last midnight is on time
    day.newest_event_ns, day.last_success = int((NOW - 80_000) * 1e9), NOW - 60
    assert _by_name(_inputs(archive=status))["offload ohlcv_1d"] == OK


def test_never_archived_is_fine_only_while_the_first_run_is_due() -> None:
    inp = _inputs(hot_rows={"silver_trades": 5})
    assert _by_name(inp)["offload silver_trades"] == OK
    assert (
        _by_name(_inputs(hot_rows={"silver_trades": 5}, started_at=NOW - 4000))[
            "offload silver_trades"
        ]
        == WARN
    )
    status = ArchiveStatus()
    status.tables["ohlcv_1h"].last_success = NOW - 10  # succeeded, nothing finished to archive yet
    assert (
        _by_name(_inputs(archive=status, hot_rows={"ohlcv_1h": 3}, started_at=NOW - 4000))[
            "offload ohlcv_1h"
        ]
        == OK
    )


def test_maintenance_and_reconcile() -> None:
    status = ArchiveStatus()
    status.tables["silver_trades"].first_attempt = NOW - 3 * 86400  # the archive is three days old
    names = _by_name(_inputs(archive=status))
    assert names["maintenance"] == WARN and names["reconcile"] == WARN  # never run
    status.maintenance_at = status.maintenance_success_at = NOW - 3600
    status.reconcile_at = NOW - 3600
    status.reconcile["silver_trades"] = [DayCheck("silver_trades", "2026-01-01", 5, 5, 9, 9)]
    names = _by_name(_inputs(archive=status))
    assert names["maintenance"] == OK and names["reconcile"] == OK
    status.maintenance_ok = False
    status.reconcile["silver_trades"] = [DayCheck("silver_trades", "2026-01-01", 5, 4, 9, 8)]
    names = _by_name(_inputs(archive=status))
    assert names["maintenance"] == FAIL and names["reconcile"] == FAIL
    status.maintenance_ok, status.maintenance_success_at = True, NOW - 30 * 3600
    assert _by_name(_inputs(archive=status))["maintenance"] == WARN


def _beat(role: str, sent_ago: float = 5.0, **kw: object) -> Heartbeat:
    fields: dict[str, object] = {
        "process": f"{role} host1 {'venue_a' if role == 'feed' else 'k2-ingest'}",
        "role": role,
        "host": "host1",
        "pid": 42,
        "started_at": NOW - 600,
        "sent_at": NOW - sent_ago,
    }
    return Heartbeat(**(fields | kw))  # type: ignore[arg-type]


def _feed_beat(sent_ago: float = 5.0, **kw: object) -> Heartbeat:
    stats = FeedStats("venue_a", state=LIVE)
    stats.trades = 1234
    report = FeedReport(stats, live_for=300.0, down_for=0.0, open_gaps=1)
    return _beat("feed", sent_ago, producer=ProducerStats(buffer_limit=100), feeds=[report], **kw)


def _cluster(*beats: Heartbeat, lag: int = 0, error: str = "") -> HealthInputs:
    lags = [PartitionLag("k2.trades.v1", 0, 10, 10 + lag, lag)]
    view = BusView("127.0.0.1:9092", error, "k2-ingest", lags, list(beats))
    return _inputs(running=False, started_at=0.0, bus=view)


def test_the_cluster_shape_judges_feeds_by_their_heartbeats() -> None:
    checks = {c.name: c for c in evaluate(_cluster(_feed_beat(), _beat("ingest")), NOT_ABOUT_DISK)}
    assert "feeds" not in checks  # every venue has a feed process reporting it
    assert checks["feed venue_a"].status == OK
    assert "1,234 trades" in checks["feed venue_a"].detail
    assert "1 being repaired" in checks["gaps venue_a"].detail
    assert checks["bus broker"].status == OK and checks["bus lag"].status == OK
    assert checks["feed host1 venue_a"].status == OK
    assert checks["ingest host1 k2-ingest"].status == OK
    assert overall(list(checks.values())) == OK, [c for c in checks.values() if c.status != OK]


def test_a_feed_down_for_long_in_its_process_fails() -> None:
    beat = _feed_beat()
    beat.feeds[0].stats.state = RECONNECTING
    beat.feeds[0].live_for, beat.feeds[0].down_for = 0.0, 100.0  # plus 5 s since it was sent
    assert _by_name(_cluster(beat))["feed venue_a"] == FAIL


def test_a_silent_process_fails_and_its_venues_count_as_uncaptured() -> None:
    names = _by_name(_cluster(_feed_beat(sent_ago=120)))
    assert names["feed host1 venue_a"] == FAIL
    assert names["feeds"] == FAIL  # no process reports venue_a any more
    assert "feed venue_a" not in names


def test_a_cleanly_stopped_process_is_reported_then_forgotten() -> None:
    names = _by_name(_cluster(_feed_beat(sent_ago=3600, stopped=True)))
    assert names["feed host1 venue_a"] == OK and names["feeds"] == FAIL
    assert "feed host1 venue_a" not in _by_name(_cluster(_feed_beat(sent_ago=2 * 86400)))


def test_producer_overflow_and_errors_show_in_its_process_row() -> None:
    beat = _feed_beat()
    assert beat.producer is not None
    beat.producer.overflows, beat.producer.last_overflow_at = 3, NOW - 60
    checks = {c.name: c for c in evaluate(_cluster(beat), NOT_ABOUT_DISK)}
    assert checks["feed host1 venue_a"].status == WARN
    assert "buffer full 3 times" in checks["feed host1 venue_a"].detail
    beat.producer.last_overflow_at = NOW - 3600  # long ago: counted, no longer a warning
    assert _by_name(_cluster(beat))["feed host1 venue_a"] == OK
    beat.producer.buffered = 90
    assert _by_name(_cluster(beat))["feed host1 venue_a"] == WARN
    beat.producer.delivery_errors, beat.producer.last_delivery_error_at = 1, NOW - 10
    assert _by_name(_cluster(beat))["feed host1 venue_a"] == FAIL


def test_ingest_lag_and_an_unreachable_broker() -> None:
    assert _by_name(_cluster(_feed_beat(), lag=60_000))["bus lag"] == WARN
    assert _by_name(_cluster(_feed_beat(), lag=600_000))["bus lag"] == FAIL
    names = _by_name(_cluster(error="Local: Broker transport failure"))
    assert names["bus broker"] == FAIL and names["feeds"] == FAIL
    assert "bus lag" not in names


def test_an_ingest_process_whose_store_is_down_fails() -> None:
    writer = WriterStats(store_down_since=NOW - 90, store_error="connection refused")
    consumer = ConsumerStats("k2-ingest-1", undecodable=2, last_undecodable_at=NOW - 30)
    checks = {
        c.name: c
        for c in evaluate(
            _cluster(_feed_beat(), _beat("ingest", consumers=[consumer], writer=writer)),
            NOT_ABOUT_DISK,
        )
    }
    row = checks["ingest host1 k2-ingest"]
    assert row.status == FAIL
    assert "not taking inserts for 90 s" in row.detail and "2 messages not K2's" in row.detail


def test_prefect_start_up_is_a_row_once_a_flow_asked_for_it() -> None:
    assert "prefect" not in _by_name(_inputs())  # no flow has run yet
    assert _by_name(_inputs(prefect=(NOW - 30, 0.0, "")))["prefect"] == WARN  # still starting
    failing = _inputs(prefect=(NOW - 400, 0.0, "connection refused"))
    checks = {c.name: c for c in evaluate(failing, NOT_ABOUT_DISK)}
    assert checks["prefect"].status == FAIL and "connection refused" in checks["prefect"].detail
    ready = {c.name: c for c in evaluate(_inputs(prefect=(NOW - 90, NOW - 63, "")), NOT_ABOUT_DISK)}
    assert ready["prefect"].status == OK and ready["prefect"].detail == "API answered after 27 s"


def test_disk_thresholds() -> None:
    assert _by_name(_inputs())["disk"] in (OK, WARN, FAIL)
    assert _by_name(_inputs(), disk_warn_pct=100.0, disk_fail_pct=0.0)["disk"] == WARN
    assert _by_name(_inputs(), disk_warn_pct=100.0, disk_fail_pct=100.0)["disk"] == FAIL


def test_a_cluster_process_on_a_busy_metrics_port_says_which_and_why() -> None:
    import socket

    from k2.errors import InputError
    from k2.observe.process import serve_metrics
    from k2.settings import load_settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=rf"127\.0\.0\.1:{port} \(setting bus\.metrics_port\)"):
            serve_metrics(load_settings(bus={"metrics_port": port}))


def test_each_stage_of_a_committed_batch_is_its_own_histogram(tmp_path: Path) -> None:
    src = FakeSource(tmp_path)
    ms = 1_000_000
    committed = time.time_ns()
    started = committed - 20 * ms  # the insert took 20 ms
    # two chunks: 3 trades handed 30 ms before the insert, 1 trade handed 5 ms before it
    handoffs = (
        [3, 1],
        [started - 32 * ms, started - 6_500_000],
        [started - 30 * ms, started - 5 * ms],
    )
    recv = np.array([started - 32 * ms] * 3 + [started - 6_500_000])
    event = recv - 150 * ms  # 150 ms from the venue's stamp to arrival
    src.metrics.stages(event, recv, handoffs, started, committed)
    src.metrics.stages(event, recv, None, 0, committed)  # the cluster shape: receive only
    families = list(text_string_to_metric_families(render(build_registry(src)).decode()))  # type: ignore[arg-type]
    (family,) = [f for f in families if f.name == "k2_writer_stage_latency_seconds"]
    buckets: dict[str, dict[str, float]] = {}
    for s in family.samples:
        if s.name.endswith("_bucket"):
            buckets.setdefault(s.labels["stage"], {})[s.labels["le"]] = s.value
    assert buckets["receive"]["0.1"] == 0 and buckets["receive"]["0.15"] == 8  # both batches
    assert buckets["parse"]["0.001"] == 0  # 2 ms and 1.5 ms, counted per trade
    assert buckets["parse"]["0.0025"] == 4
    assert buckets["queue"]["0.01"] == 1 and buckets["queue"]["0.05"] == 4  # 5 ms x1, 30 ms x3
    assert buckets["insert"]["0.01"] == 0 and buckets["insert"]["0.025"] == 4
