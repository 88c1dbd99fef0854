"""The cluster shape as real processes on 2 cores: `k2 simulate` with faults, three `k2 feed`
processes, the broker (Tansu), and one `k2 ingest` with two consumers on chDB (one process per
store path). During the run: kill -9 of a feed and its restart, kill -9 of the ingest process
and its restart (a rebalance as its members rejoin), and the broker unresponsive for 10 s.
Afterwards silver equals the simulator's tape and the candles equal a recomputation from silver.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from k2.archive.status import ArchiveStatus
from k2.bus.client import ensure_topics
from k2.bus.status import read_bus
from k2.bus.topics import status_topic
from k2.observe.health import HealthInputs, evaluate
from k2.settings import HealthSettings
from k2.simulator.simulator import read_exports
from tests.bus_support import Broker, free_port, published_trades
from tests.hot_support import (
    assert_candles_equal,
    assert_silver_equals,
    from_first_seen,
    load_record,
    read_silver,
)
from tests.integration.test_up import K2, env_without_k2, open_store, write_config
from tests.support import exit_code, until, wait_for_line

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VENUES = ("binance", "kraken", "coinbase")
FAMILIES = Path(__file__).parents[2] / "src" / "k2" / "observe" / "families.py"


def metrics(port: int) -> dict[str, float]:
    """Each family's samples summed, from a process's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
            out.setdefault(family.name, 0.0)
    return out


def caught_up(bootstrap: str, group: str, topics: dict[str, int]) -> bool:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, 10)}
        for tp in tps:
            high = c.get_watermark_offsets(tp, 10)[1]
            if high > 0 and committed[(tp.topic, tp.partition)] < high:
                return False
        return True
    finally:
        c.close()


def test_feeds_broker_and_ingest_processes_survive_kill_9_and_a_broker_outage(
    broker: Broker, tmp_path: Path
) -> None:
    bus = broker.settings()
    # the partitions the ingest group consumes (not the heartbeats')
    topics = {t: n for t, n in ensure_topics(bus).items() if t != status_topic(bus.topic_prefix)}
    truth_file = tmp_path / "truth.jsonl"
    config = write_config(tmp_path, "")
    env = env_without_k2() | {
        "K2_INSTRUMENTS_FILE": str(tmp_path / "instruments.toml"),
        "K2_BUS__BOOTSTRAP_SERVERS": bus.bootstrap_servers,
        "K2_BUS__TOPIC_PREFIX": bus.topic_prefix,
        "K2_BUS__GROUP_ID": bus.group_id,
        "K2_BUS__SESSION_TIMEOUT_MS": "6000",
        "K2_BUS__CONSUMERS": "2",
    }
    sim_log = (tmp_path / "simulate.log").open("wb")
    sim = subprocess.Popen(
        [
            *K2,
            "simulate",
            "--port",
            "0",
            "--seed",
            "13",
            "--rate",
            "8",
            "--record",
            str(truth_file),
            "--faults",
            "all",
            "--faults-for",
            "30",
            "--market-for",
            "45",
        ],
        stdout=subprocess.PIPE,
        stderr=sim_log,
        env=env,
    )
    assert sim.stdout is not None
    exports = read_exports(sim.stdout)
    run_env = env | exports
    logs: list = []  # type: ignore[type-arg]
    log_of: dict[int, Path] = {}
    started: list[subprocess.Popen[bytes]] = []  # every process, to kill any left at the end

    ports = {"feed-binance": free_port(), "ingest": free_port()}

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{name}-{len(logs)}.log", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        own = {"K2_BUS__METRICS_PORT": str(ports[name])} if name in ports else {}
        process = subprocess.Popen(
            [*K2, "--config", str(config), *args], env=run_env | own, stdout=log, stderr=log
        )
        log_of[process.pid] = Path(log.name)
        started.append(process)
        return process

    feeds: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for venue in VENUES:
            feeds[venue] = start(f"feed-{venue}", "feed", "--venue", venue)
        ingest = start("ingest", "ingest")
        time.sleep(10)
        feeds["kraken"].send_signal(signal.SIGKILL)  # mid-repair, with unacknowledged messages
        feeds["kraken"].wait(10)
        time.sleep(2)  # downtime: trades nobody sees
        feeds["kraken"] = start("feed-kraken", "feed", "--venue", "kraken")
        time.sleep(5)
        ingest.send_signal(signal.SIGKILL)  # mid-batch
        ingest.wait(10)
        ingest = start("ingest", "ingest")
        time.sleep(5)
        broker.pause()  # the broker stops answering for 10 s
        time.sleep(10)
        broker.resume()
        deadline = time.monotonic() + 150
        wait_for_line(tmp_path / "simulate.log", "market closed: no new trades", timeout=60)
        truth_keys = set(load_record(truth_file))  # whole once the market has closed

        # the gaps repaired: every trade on the bus from each symbol's first one there (the
        # market opened before the feeds subscribed)
        def unpublished() -> set[tuple[str, str, int]]:
            seen = published_trades(bus)
            return from_first_seen(truth_keys, seen) - seen

        until(
            lambda: not unpublished(),
            90,
            "the feeds to publish every trade",
            lambda: sorted(unpublished()),
        )
        while time.monotonic() < deadline and not caught_up(
            bus.bootstrap_servers, bus.group_id, topics
        ):
            time.sleep(1)
        scraped = {name: metrics(port) for name, port in ports.items()}  # all still running
        running = read_bus(bus)  # each process's heartbeat, as k2 health reads them
        for venue, process in feeds.items():
            process.send_signal(signal.SIGTERM)
            assert exit_code(process, log_of[process.pid], 60) == 0, venue
        time.sleep(3)
        while time.monotonic() < deadline and not caught_up(
            bus.bootstrap_servers, bus.group_id, topics
        ):
            time.sleep(1)
        ingest.send_signal(signal.SIGTERM)
        assert exit_code(ingest, log_of[ingest.pid], 60) == 0
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
        sim_log.close()
        for f in logs:
            f.close()
    # the bus's metrics, from the processes that export them
    declared = set(re.findall(r'"(k2_bus_[a-z0-9_]+)"', FAMILIES.read_text()))
    exported = scraped["feed-binance"] | scraped["ingest"]
    assert declared <= set(exported), declared - set(exported)
    assert exported["k2_bus_producer_delivered_total"] > 0
    assert exported["k2_bus_consumer_batches_total"] > 0
    assert exported["k2_bus_consumer_assigned_partitions"] > 0
    # k2 health in the cluster shape: every process by its heartbeat (the restarted kraken feed
    # replaces the killed one), its feeds' rows from them, then each process's clean stop
    assert {tuple(b.process.split()[::2]) for b in running.processes} == {
        *(("feed", v) for v in VENUES),
        ("ingest", bus.group_id),
    }
    assert not any(b.stopped for b in running.processes)
    assert {b.pid for b in running.processes if b.role == "feed"} == {p.pid for p in feeds.values()}
    live = evaluate(
        HealthInputs(time.time(), False, list(VENUES), tmp_path, ArchiveStatus(), bus=running),
        HealthSettings(),
    )
    rows = {c.name: c for c in live}
    assert "feeds" not in rows and all(f"feed {v}" in rows for v in VENUES)
    assert rows["bus broker"].status == "OK" and rows["bus lag"].status == "OK"
    assert all(rows[b.process].status != "FAIL" for b in running.processes), live
    done = subprocess.run(
        [*K2, "--config", str(config), "health", "--json"],
        env=run_env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stdout)
    assert done.returncode == 2, report  # nothing captures any more
    stopped = {c["name"]: c for c in report["checks"] if c["name"] in rows}
    assert all("stopped cleanly" in stopped[b.process]["detail"] for b in running.processes), (
        stopped
    )
    assert stopped["bus lag"]["status"] == "OK"
    kraken_restart = (tmp_path / "feed-kraken-4.log").read_text()
    assert re.search(r"kraken: resuming [1-9]\d* symbols from the bus", kraken_restart)
    store = open_store(tmp_path / "data")
    try:
        silver = read_silver(store)  # asserts no trade is there twice
        compared = assert_silver_equals(silver, load_record(truth_file), from_first_stored=True)
        assert compared > 1000
        print(f"truth check: {compared:,} trades, silver equal to the tape, 0 missing, 0 twice")
        assert_candles_equal(store, silver)
    finally:
        store.close()
