"""The same data in both shapes, from one market.

One `k2 simulate`, its market closed until two connections subscribe to every symbol, feeds at
once:
- the cluster shape: a Kafka broker (Tansu), one `k2 feed` per venue, `k2 ingest`, then `k2 api`
  on what ingest stored, and `k2 flows serve` against a real `prefect server start`, archiving
  to a PostgreSQL catalog and S3 on loopback (moto);
- the embedded shape: `k2 up`, then `k2 offload` on its data directory (local disk, SQLite).

Afterwards silver, every candle table and all ten Iceberg tables are equal between the shapes,
row for row, but for what names the shape itself (receive times, writer sequences and names,
connection ids); and silver equals the simulator's tape in both.

chDB opens a data directory in one process at a time, so `k2 api` and the flow runs open the
cluster's store after `k2 ingest` has stopped; with a ClickHouse server they run alongside it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from k2.archive.lake import Lake
from k2.archive.tables import TABLES, ArchiveTable
from k2.bus.client import ensure_topics
from k2.bus.topics import status_topic
from k2.settings import load_settings
from k2.simulator.simulator import read_exports
from tests.archive_support import PG, S3_KEY, make_bucket, postgres_available
from tests.bus_support import Broker, published_trades
from tests.hot_support import (
    assert_candles_equal,
    assert_silver_equals,
    load_record,
    read_candles,
    read_silver,
)
from tests.integration.test_cluster_processes import caught_up
from tests.integration.test_up import K2, env_without_k2, open_store, wait_for_api, write_config
from tests.prefect_support import clear_deployments, deployments, run_deployment, wait_for_runs
from tests.support import exit_code, until, wait_for_line

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VENUES = ("binance", "kraken", "coinbase")
TIMEFRAMES = ("1m", "5m", "15m", "30m", "1h", "1d")
# columns whose values belong to the shape that stored the row, not to the trade
SHAPE_COLUMNS = {"ts_recv", "ts_recv_ns", "ingest_seq", "writer", "conn_id"}


@pytest.fixture
def catalog() -> Iterator[str]:
    """A fresh PostgreSQL database for the cluster's Iceberg catalog."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg2

    name = f"k2_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield f"{PG}/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def stored_trades(api: str) -> int:
    """The trades a running `k2 up` holds, by its API."""
    rows = httpx.get(f"{api}/api/symbols", timeout=30).json()["rows"]
    return sum(int(r["trades"]) for r in rows)


def comparable(spec: ArchiveTable, lake: Lake) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    """An archive table's rows without the shape's own columns, by key; none twice."""
    data = lake.table(spec).scan().to_arrow()
    names = sorted(set(data.column_names) - SHAPE_COLUMNS)
    key = (
        ("exchange", "canonical_symbol", "window_start")
        if spec.is_candles
        else ("symbol", "trade_id", "duplicate")
        if "duplicate" in names
        else ("exchange", "symbol", "trade_id")
    )
    rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for r in data.select(names).to_pylist():
        if spec.name == "bronze_trades_binance":
            # "E" is when Binance sent the message, to this connection: each shape had its own
            message = json.loads(r["raw"])
            assert isinstance(message["data"].pop("E"), int)
            r["raw"] = message
        k = tuple(r[n] for n in key)
        assert k not in rows, f"{spec.name}: {k} archived twice"
        rows[k] = tuple(r[n] for n in names)
    return rows


def test_cluster_and_embedded_shapes_store_and_archive_the_same_rows(
    broker: Broker, s3_endpoint: str, catalog: str, prefect_server: str, tmp_path: Path
) -> None:
    bus = broker.settings()
    topics = {t: n for t, n in ensure_topics(bus).items() if t != status_topic(bus.topic_prefix)}
    cluster_dir, embedded_dir = tmp_path / "cluster", tmp_path / "embedded"
    cluster_dir.mkdir()
    embedded_dir.mkdir()
    bucket = make_bucket(s3_endpoint)
    cluster = write_config(
        cluster_dir,
        f'[archive]\ncatalog_uri = "{catalog}"\nwarehouse = "s3://{bucket}/warehouse"\n'
        f'[archive.s3]\nendpoint = "{s3_endpoint}"\n'
        f'access_key_id = "{S3_KEY}"\nsecret_access_key = "{S3_KEY}"\n',
    )
    embedded = write_config(embedded_dir, "")
    truth_file = tmp_path / "truth.jsonl"
    env = env_without_k2() | {
        "K2_INSTRUMENTS_FILE": str(cluster_dir / "instruments.toml"),
        "PREFECT_API_URL": prefect_server,
    }
    sim_log = (tmp_path / "simulate.log").open("wb")
    sim = subprocess.Popen(
        [
            *K2,
            "simulate",
            "--port",
            "0",
            "--seed",
            "29",
            "--rate",
            "6",
            "--record",
            str(truth_file),
            "--clients",
            "2",  # the cluster's feed and k2 up's, per symbol
            "--market-for",
            "15",
        ],
        stdout=subprocess.PIPE,
        stderr=sim_log,
        env=env,
    )
    assert sim.stdout is not None
    exports = read_exports(sim.stdout)
    bus_env = {
        "K2_BUS__BOOTSTRAP_SERVERS": bus.bootstrap_servers,
        "K2_BUS__TOPIC_PREFIX": bus.topic_prefix,
        "K2_BUS__GROUP_ID": bus.group_id,
    }
    run_env = env | exports
    logs: list[Any] = []
    running: list[subprocess.Popen[bytes]] = []

    def start(name: str, config: Path, *args: str, own: dict[str, str] | None = None) -> Any:
        log = (tmp_path / f"{name}.log").open("wb")
        logs.append(log)
        p = subprocess.Popen(
            [*K2, "--config", str(config), *args],
            env=run_env | (own or {}),
            stdout=log,
            stderr=log,
        )
        running.append(p)
        return p

    def stop(p: subprocess.Popen[bytes], name: str) -> None:
        p.send_signal(signal.SIGTERM)
        log = tmp_path / f"{name}.log"
        assert exit_code(p, log, 60) == 0, log.read_text()[-3000:]

    try:
        # -- both shapes capture the same market -------------------------------------------------
        feeds = {v: start(f"feed-{v}", cluster, "feed", "--venue", v, own=bus_env) for v in VENUES}
        ingest = start("ingest", cluster, "ingest", own=bus_env)
        up = start("up", embedded, "up")
        wait_for_line(tmp_path / "simulate.log", "market closed: no new trades", timeout=120)
        truth = load_record(truth_file)  # whole once the market has closed
        assert len(truth) > 500  # 9 symbols at 6 a second for 15 s
        # every trade captured, before anything stops: on the bus, and in k2 up's silver
        until(lambda: set(truth) <= published_trades(bus), 60, "the feeds to publish every trade")
        api = wait_for_api(embedded_dir / "data")
        until(lambda: stored_trades(api) >= len(truth), 60, "k2 up to store every trade")
        for venue, p in feeds.items():
            stop(p, f"feed-{venue}")
        stop(up, "up")
        until(
            lambda: caught_up(bus.bootstrap_servers, bus.group_id, topics),
            60,
            "k2 ingest to write all the bus holds",
        )
        stop(ingest, "ingest")

        # -- the cluster's API on what ingest stored ---------------------------------------------
        api = start("api", cluster, "api", "--port", "0", own=bus_env)
        url = ""
        deadline = time.monotonic() + 60
        while not url and time.monotonic() < deadline:
            assert api.poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            found = re.search(r"serving on (\S+)", (tmp_path / "api.log").read_text())
            url = found.group(1) if found else ""
            time.sleep(0.2)
        assert url, "k2 api never said where it serves"
        health = httpx.get(f"{url}/health", timeout=30).json()
        rows = {c["name"]: c for c in health["checks"]}
        assert rows["bus broker"]["status"] == "OK" and rows["bus lag"]["status"] == "OK"
        processes = [n for n in rows if n.startswith(("feed ", "ingest ")) and n.count(" ") == 2]
        assert len(processes) == 4, rows
        assert all("stopped cleanly" in rows[n]["detail"] for n in processes), rows
        assert rows["fresh silver_trades"]["status"] == "OK", rows
        symbols = httpx.get(f"{url}/api/symbols", timeout=30).json()["rows"]
        assert len(symbols) == 9 and all(s["trades"] > 0 for s in symbols), symbols
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert re.search(r'^k2_hotstore_rows\{table="silver_trades"\} [1-9]', metrics, re.MULTILINE)
        stop(api, "api")

        # -- the archive: deployments under k2 flows serve, and k2 offload ----------------------
        clear_deployments(prefect_server)  # other tests' (they share the session's server)
        # (its runner looks for runs to start every 2 s, not 10)
        serving = start(
            "serve", cluster, "flows", "serve", own={"PREFECT_RUNNER_POLL_FREQUENCY": "2"}
        )
        offload_started = time.time()
        offload = start("offload", embedded, "offload")
        deadline = time.monotonic() + 120
        served: dict[str, Any] = {}
        while time.monotonic() < deadline and len(served) < 3:
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
            served = deployments(prefect_server)
        assert set(served) == {"offload", "maintenance", "reconcile"}
        assert served["offload"]["schedules"][0]["schedule"]["cron"] == "*/15 * * * *"
        assert served["offload"]["global_concurrency_limit"]["limit"] == 1
        # two runs asked for at once: one after the other, the second finds nothing new
        runs = [run_deployment(prefect_server, served["offload"]["id"]) for _ in range(2)]
        done = wait_for_runs(prefect_server, runs, timeout=240)
        assert [r["state"]["type"] for r in done] == ["COMPLETED"] * 2, [r["state"] for r in done]
        first, second = sorted(done, key=lambda r: r["start_time"])
        assert first["end_time"] <= second["start_time"], (first, second)
        stop(offload, "offload")
        serving.send_signal(signal.SIGTERM)  # docker stop: the runner shuts down cleanly
        assert exit_code(serving, tmp_path / "serve.log", 60) == 0
    finally:
        for p in running:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
        sim_log.close()
        for f in logs:
            f.close()
    archived_at = {"cluster": first["start_time"], "embedded": offload_started}

    # -- the hot stores: silver and candles ------------------------------------------------------
    assert load_record(truth_file) == truth  # nothing traded after the close
    silver, candles = {}, {}
    for shape, data in (("cluster", cluster_dir / "data"), ("embedded", embedded_dir / "data")):
        store = open_store(data)
        try:
            silver[shape] = read_silver(store)  # asserts no trade is there twice
            # the market opened once both shapes had subscribed: each saw every trade
            assert assert_silver_equals(silver[shape], truth) == len(truth)
            assert_candles_equal(store, silver[shape])
            candles[shape] = {tf: read_candles(store, tf) for tf in TIMEFRAMES}
        finally:
            store.close()
    assert silver["cluster"] == silver["embedded"]
    assert candles["cluster"] == candles["embedded"]
    print(f"both shapes: silver equal to the tape and to each other, {len(truth):,} trades")

    # -- the archives: all ten tables ------------------------------------------------------------
    lakes = {
        "cluster": Lake(load_settings(cluster).archive, cluster_dir / "data"),
        "embedded": Lake(load_settings(embedded).archive, embedded_dir / "data"),
    }
    assert not (cluster_dir / "data" / "lake" / "warehouse").exists()  # S3 it was
    try:
        for spec in TABLES:
            a, b = (comparable(spec, lakes[s]) for s in ("cluster", "embedded"))
            both = set(a) & set(b)
            differ = sorted(k for k in both if a[k] != b[k])
            assert not differ, (spec.name, differ[:1], [(a[k], b[k]) for k in differ[:1]])
            if spec.is_candles:
                # a window closed between the two offloads is archived by the later one only
                assert spec.timeframe is not None
                for only, other in ((set(a) - set(b), "embedded"), (set(b) - set(a), "cluster")):
                    assert all(_ends_after(k[2], spec.timeframe, archived_at[other]) for k in only)
            else:
                assert set(a) == set(b) and a, spec.name
        print("both shapes: the ten Iceberg tables hold the same rows")
    finally:
        for lake in lakes.values():
            lake.close()


def _ends_after(window_start: Any, timeframe: str, at: Any) -> bool:
    """Did this window close after `at` (an ISO time or UNIX seconds), so that an offload at
    `at` could not archive it yet?"""
    import datetime as dt

    from k2.hotstore.schema import TIMEFRAME_BY_NAME

    end = window_start.timestamp() + TIMEFRAME_BY_NAME[timeframe].seconds
    when = at if isinstance(at, float) else dt.datetime.fromisoformat(at).timestamp()
    return bool(end > when - 5)  # (clocks: the run's start is its own)
