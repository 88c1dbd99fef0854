"""`k2 up` as a user runs it: end to end against the simulator, kill -9 and restart, one owner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from k2.hotstore.clickhouse import ClickHouseStore
from k2.simulator.faults import FAULTS
from k2.simulator.simulator import read_exports
from k2.timeutil import ns_to_rfc3339
from tests.hot_support import assert_candles_equal, assert_silver_equals, load_record, read_silver

pytestmark = [pytest.mark.integration, pytest.mark.slow]
K2 = [sys.executable, "-m", "k2"]
INSTRUMENTS = """
[binance]
symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
[kraken]
symbols = ["BTC/USD", "ETH/USD", "DOGE/USD"]
[coinbase]
symbols = ["BTC-USD", "ETH-USD", "LTC-USD"]
"""
FAST_INGEST = """
[ingest]
backoff_initial_s = 0.2
backoff_max_s = 1.5
gap_grace_s = 0.2
[venues.kraken]
heartbeat_timeout_s = 3
[venues.coinbase]
heartbeat_timeout_s = 3
[api]
port = 0
"""


def env_without_k2() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("K2_")}


def write_config(tmp: Path, body: str) -> Path:
    (tmp / "instruments.toml").write_text(INSTRUMENTS)
    config = tmp / "k2.toml"
    config.write_text(
        f'data_dir = "{tmp / "data"}"\n'
        f'instruments_file = "{tmp / "instruments.toml"}"\n'
        f"{FAST_INGEST}{body}"
    )
    return config


def open_store(data_dir: Path) -> ClickHouseStore:
    return ClickHouseStore.at(data_dir / "hot")


def wait_for_api(data_dir: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            url = json.loads((data_dir / "k2.lock").read_text() or "{}").get("api_url")
        except (OSError, ValueError):
            url = None
        if url:
            return url
        time.sleep(0.2)
    raise AssertionError("k2 up never published its API address")


def test_up_simulate_with_faults_silver_and_candles_equal_ground_truth(tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.jsonl"
    config = write_config(
        tmp_path,
        f"""
[simulator]
seed = 42
trades_per_second = 8
faults = "{",".join(FAULTS)}"
disconnect_every_s = 3
connection_max_age_s = 4
fault_seconds = 12
record_file = "{truth_file}"
""",
    )
    out = subprocess.run(
        [*K2, "--config", str(config), "up", "--simulate", "--duration", "22"],
        capture_output=True,
        timeout=180,
        env=env_without_k2(),
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    log = out.stderr.decode()
    assert "rotated" in log and "rate limited" in log and "feed down" in log  # the faults happened
    gaps = run_jsonl(config, "gaps", "--outcome", "repaired", "--limit", "100000")
    assert gaps and {g["outcome"] for g in gaps} == {"repaired"}
    # `missing` is what is still missing after the repair; an id gap recovered every id it spans.
    ids = [g for g in gaps if g["kind"] == "ids"]
    assert ids and all(
        g["missing"] == 0 and g["recovered"] == g["last_id"] - g["first_id"] + 1 for g in ids
    )  # type: ignore[operator]
    rejects = run_jsonl(config, "rejects", "--venue", "kraken")
    assert rejects and all(r["exchange"] == "kraken" and r["reason"] for r in rejects)
    store = open_store(tmp_path / "data")
    try:
        silver = read_silver(store)
        n = assert_silver_equals(silver, load_record(truth_file))
        assert n > 1000
        assert assert_candles_equal(store, silver) > 0
        bronze = store.rows(
            "SELECT sum(c) FROM (SELECT count() c FROM k2.bronze_trades_binance UNION ALL "
            "SELECT count() FROM k2.bronze_trades_kraken UNION ALL "
            "SELECT count() FROM k2.bronze_trades_coinbase)"
        )[0][0]
        dups = store.rows(
            "SELECT (SELECT countIf(duplicate) FROM k2.bronze_trades_coinbase) + "
            "(SELECT countIf(duplicate) FROM k2.bronze_trades_kraken)"
        )[0][0]
        assert bronze > n and dups > 0  # duplicates are kept in bronze, never in silver
        assert store.rows("SELECT count() FROM k2.rejects")[0][0] > 0
        outcomes = dict(
            store.rows("SELECT toString(outcome), count() FROM k2.feed_gaps FINAL GROUP BY outcome")
        )
        assert outcomes.get("repaired", 0) > 0 and set(outcomes) == {"repaired"}
        # `k2 gaps` shows each gap once, in its latest state
        assert len(gaps) == outcomes["repaired"]
    finally:
        store.close()


def test_poisoned_frames_are_rejects_their_trades_repaired_and_silver_equals_the_tape(
    tmp_path: Path,
) -> None:
    # One field of one trade changed on the stream (REST keeps the true value): a time in 9999 or
    # 2000, a price too big for Decimal(38, 18), an amount of 19 decimals, a negative price, an id
    # 10^12 beyond the stream. Nothing may crash, stall, or reach silver; every true trade must.
    truth_file = tmp_path / "truth.jsonl"
    config = write_config(
        tmp_path,
        f"""
[simulator]
seed = 7
trades_per_second = 10
faults = "poison"
fault_seconds = 14
record_file = "{truth_file}"
""",
    )
    started = time.monotonic()
    out = subprocess.run(
        [*K2, "--config", str(config), "up", "--simulate", "--duration", "22"],
        capture_output=True,
        timeout=120,
        env=env_without_k2(),
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    assert time.monotonic() - started < 22 + 30  # start-up plus at most the 15 s grace
    assert b"Traceback" not in out.stderr
    truth_lines = [json.loads(line) for line in truth_file.read_text().splitlines()]
    poisoned = [t for t in truth_lines if "poisoned" in t]
    assert len(poisoned) >= 5 and len({t["poisoned"] for t in poisoned}) >= 3, poisoned
    rejects = run_jsonl(config, "rejects", "--limit", "100000")
    assert len(rejects) == len(poisoned), (len(rejects), poisoned)
    for t in poisoned:  # each poisoned frame is in rejects, with a reason
        marker = str(t["trade_id"] + 10**12) if t["poisoned"] == "id" else str(t["trade_id"])
        assert any(
            marker in r["raw"] and r["exchange"] == t["exchange"] and r["reason"] for r in rejects
        ), t
    store = open_store(tmp_path / "data")
    try:
        silver = read_silver(store)
        # the poisoned trades included
        assert assert_silver_equals(silver, load_record(truth_file)) > 1000
        assert assert_candles_equal(store, silver) > 0
        outcomes = dict(
            store.rows("SELECT toString(outcome), count() FROM k2.feed_gaps FINAL GROUP BY outcome")
        )
        assert set(outcomes) <= {"repaired"}, outcomes
    finally:
        store.close()


def run_jsonl(config: Path, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [*K2, "--config", str(config), *args, "--format", "jsonl"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env_without_k2(),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_kill_minus_9_and_restart_never_duplicates_and_repairs_the_downtime(tmp_path: Path) -> None:
    truth_file = tmp_path / "truth.jsonl"
    config = write_config(tmp_path, "")
    env = env_without_k2() | {"K2_INSTRUMENTS_FILE": str(tmp_path / "instruments.toml")}
    sim = subprocess.Popen(
        [
            *K2,
            "simulate",
            "--port",
            "0",
            "--seed",
            "9",
            "--rate",
            "10",
            "--record",
            str(truth_file),
            "--faults",
            "disconnect,gaps,duplicates,reorder,malformed",
            "--faults-for",
            "16",
            "--market-for",
            "26",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert sim.stdout is not None
    exports = read_exports(sim.stdout)
    up_env = env | exports
    logs = [open(tmp_path / f"up{i}.log", "wb") for i in range(2)]  # noqa: SIM115 - closed in the finally below
    try:
        first = subprocess.Popen(
            [*K2, "--config", str(config), "up"], env=up_env, stdout=logs[0], stderr=logs[0]
        )
        wait_for_api(tmp_path / "data")
        time.sleep(7)
        first.send_signal(signal.SIGKILL)  # mid-batch, mid-repair: no chance to flush anything
        first.wait(10)
        time.sleep(2.5)  # downtime: trades happen that nobody sees
        second = subprocess.Popen(
            [*K2, "--config", str(config), "up"], env=up_env, stdout=logs[1], stderr=logs[1]
        )
        time.sleep(30)  # past the market's close, with time to repair
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
        for f in logs:
            f.close()
    restart_log = (tmp_path / "up1.log").read_text()
    assert "the last stop was not clean" in restart_log  # the store was repaired before ingesting
    store = open_store(tmp_path / "data")
    try:
        silver = read_silver(store)  # asserts no trade is there twice
        assert assert_silver_equals(silver, load_record(truth_file), from_first_stored=True) > 1000
        assert_candles_equal(store, silver)
    finally:
        store.close()


def test_one_owner_per_data_directory_and_queries_while_running(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[simulator]\ntrades_per_second = 20\n")
    up = subprocess.Popen(
        [*K2, "--config", str(config), "up", "--simulate"],
        env=env_without_k2(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_api(tmp_path / "data")
        time.sleep(3)
        second = subprocess.run(
            [*K2, "--config", str(config), "up", "--simulate"],
            capture_output=True,
            timeout=60,
            env=env_without_k2(),
            check=False,
        )
        assert second.returncode == 2
        assert b"is in use by k2 up (pid" in second.stderr
        # Queries go through the running process.
        rows = subprocess.run(
            [
                *K2,
                "--config",
                str(config),
                "trades",
                "--venue",
                "kraken",
                "--limit",
                "5",
                "--format",
                "jsonl",
            ],
            capture_output=True,
            timeout=60,
            env=env_without_k2(),
            check=False,
        )
        assert rows.returncode == 0, rows.stderr
        trades = [json.loads(line) for line in rows.stdout.splitlines()]
        assert len(trades) == 5 and all(t["exchange"] == "kraken" for t in trades)
        assert [t["ts_event"] for t in trades] == sorted(t["ts_event"] for t in trades)
        candles = subprocess.run(
            [*K2, "--config", str(config), "candles", "--symbol", "BTC/USD", "--format", "csv"],
            capture_output=True,
            timeout=60,
            env=env_without_k2(),
            check=False,
        )
        assert candles.returncode == 0, candles.stderr
        header, *lines = candles.stdout.decode().splitlines()
        assert header.startswith(
            "exchange,canonical_symbol,timeframe,window_start,open,high,low,close,volume"
        )
        assert lines and all(",BTC/USD,1m," in line for line in lines)
        # export and replay stream through the running process too (its /api/export routes)
        until = ns_to_rfc3339(time.time_ns() - 2 * 10**9)  # closed: no trade arrives in it now
        window = ("--from", "1h", "--to", until)
        common = (*K2, "--config", str(config))
        listed = subprocess.run(
            [*common, "trades", *window, "--limit", "1000000", "--format", "jsonl"],
            capture_output=True,
            timeout=60,
            env=env_without_k2(),
            check=True,
        ).stdout
        as_csv = [
            subprocess.run(
                [*common, *args, *window, "--format", "csv"],
                capture_output=True,
                timeout=60,
                env=env_without_k2(),
                check=True,
            )
            for args in (("trades", "--limit", "1000000"), ("export", "--out", "-"))
        ]
        assert as_csv[0].stdout and as_csv[0].stdout == as_csv[1].stdout  # one text form alike
        replayed = subprocess.run(
            [*common, "replay", *window],
            capture_output=True,
            timeout=60,
            env=env_without_k2(),
            check=False,
        )
        assert replayed.returncode == 0 and replayed.stdout == listed, replayed.stderr
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(60) == 0
    # Stopped: the same queries open the data directory directly.
    rows = subprocess.run(
        [*K2, "--config", str(config), "trades", "--limit", "3", "--format", "jsonl"],
        capture_output=True,
        timeout=60,
        env=env_without_k2(),
        check=False,
    )
    assert rows.returncode == 0 and len(rows.stdout.splitlines()) == 3
    bad = subprocess.run(
        [*K2, "--config", str(config), "candles", "--timeframe", "2m"],
        capture_output=True,
        timeout=60,
        env=env_without_k2(),
        check=False,
    )
    assert bad.returncode == 2 and b"unknown timeframe '2m'" in bad.stderr


def test_archive_commands_run_inside_k2_up_and_on_a_stopped_data_directory(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "[simulator]\ntrades_per_second = 20\n[archive]\nschedule_enabled = false\n"
    )
    env = env_without_k2()

    def k2(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        command = [*K2, "--config", str(config), *args]
        return subprocess.run(command, capture_output=True, timeout=timeout, env=env, check=False)

    up = subprocess.Popen(
        [*K2, "--config", str(config), "up", "--simulate"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_api(tmp_path / "data")
        time.sleep(4)
        out = k2("offload", "--json")
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        first = json.loads(out.stdout)
        assert (
            first["silver_trades"]["rows"] > 100 and first["bronze_trades_kraken"]["commits"] >= 1
        )
        out = k2("reconcile", "--json")
        assert out.returncode == 0, out.stderr.decode()[-2000:]
        checked = json.loads(out.stdout)
        assert checked["silver_trades"]["differences"] == []
        assert checked["silver_trades"]["days"] in (1, 2)  # 2 if the run spans midnight UTC
        assert len(checked) == 10 and all(not r["differences"] for r in checked.values())
        health = k2("health", "--json", timeout=120)
        rows = {c["name"]: c for c in json.loads(health.stdout)["checks"]}
        # the flows waited for Prefect's API once: how long is shown
        assert rows["prefect"]["status"] == "OK", rows["prefect"]
        assert rows["prefect"]["detail"].startswith("API answered after ")
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0
    # Stopped: the commands open the data directory themselves; the rest of the trades go now.
    # (Reconcile on a stopped directory takes the same path as offload and maintain:
    # tested above inside.)
    out = k2("offload", "--json")
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    second = json.loads(out.stdout)
    assert second["silver_trades"]["watermark_before"] == first["silver_trades"]["watermark_after"]
    out = k2("maintain", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["silver_trades"]["files_after"] >= 1
    assert json.loads(out.stdout)["silver_trades"]["hot_days_dropped"] == 0  # all within retention
    bad = k2("offload", "-t", "gold", timeout=120)
    assert bad.returncode == 2 and b"unknown archive table 'gold'" in bad.stderr
