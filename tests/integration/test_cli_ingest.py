"""The ingest commands as a user runs them: k2 normalize, k2 simulate, k2 watch."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from k2.simulator.simulator import read_exports
from tests.conftest import SAMPLES, sample_bytes
from tests.support import K2, k2

pytestmark = pytest.mark.integration
KEYS = [
    "exchange",
    "symbol",
    "canonical_symbol",
    "trade_id",
    "price",
    "amount",
    "taker_side",
    "ts_event",
    "ts_recv",
]


def test_normalize_stdin_every_key() -> None:
    lines = (
        b"\n".join([sample_bytes("kraken-snapshot.json"), sample_bytes("kraken-heartbeat.json")])
        + b"\n"
    )
    out = k2("normalize", "kraken", stdin=lines)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 2 and all(list(r) == KEYS for r in rows)
    assert rows[0] | {"ts_recv": None} == {
        "exchange": "kraken",
        "symbol": "MATIC/USD",
        "canonical_symbol": "MATIC/USD",
        "trade_id": 4665846,
        "price": "0.5147",
        "amount": "6423.46326",
        "taker_side": "buy",
        "ts_event": "2023-09-25T07:48:36.925533000Z",
        "ts_recv": None,
    }
    assert rows[0]["ts_recv"].endswith("Z") and len(rows[0]["ts_recv"]) == 30


def test_normalize_file_reports_bad_lines_and_keeps_going(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    f.write_bytes(
        b"{not json\n"
        + sample_bytes("binance-trade.json")
        + b"\n\n"
        + sample_bytes("binance-subscribe-response.json")
        + b"\n"
    )
    out = k2("normalize", "binance", str(f))
    assert out.returncode == 0
    (row,) = [json.loads(x) for x in out.stdout.splitlines()]
    assert row["trade_id"] == 12345 and row["price"] == "0.001" and row["taker_side"] == "sell"
    assert row["ts_event"] == "2022-12-31T19:43:02.136000000Z"  # 1672515782136 ms
    assert out.stderr.decode().startswith("line 1: ")


def test_normalize_exits_1_when_every_line_fails() -> None:
    out = k2("normalize", "coinbase", stdin=b"nope\n[1]\n")
    assert out.returncode == 1 and b"line 1:" in out.stderr and b"line 2:" in out.stderr


def test_normalize_decimal_text_has_no_exponent() -> None:
    raw = (
        b'{"channel":"trade","type":"update","data":[{"symbol":"SHIB/USD","side":"buy","price":1E-7,'
        b'"qty":2.5e3,"trade_id":9,"timestamp":"2024-01-01T00:00:00.000001Z"}]}\n'
    )
    row = json.loads(k2("normalize", "kraken", stdin=raw).stdout)
    assert row["price"] == "0.0000001" and row["amount"] == "2500"


def test_normalize_unknown_venue() -> None:
    out = k2("normalize", "bitstamp", stdin=b"")
    assert out.returncode == 2 and b"unknown venue 'bitstamp'" in out.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("*.json")))
def test_normalize_never_crashes_on_any_sample(name: str) -> None:
    venue = name.split("-")[0]
    out = k2("normalize", venue, stdin=sample_bytes(name) + b"\n")
    assert out.returncode in (0, 1) and b"Traceback" not in out.stderr


def test_simulate_prints_exports_first_and_records_on_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "truth.jsonl"
    proc = subprocess.Popen(
        [*K2, "simulate", "--port", "0", "--record", str(record), "--faults", "gaps,duplicates"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    exports = read_exports(proc.stdout)  # export lines only, up to the line that ends them
    assert all(key.startswith("K2_VENUES__") for key in exports), exports
    assert exports["K2_VENUES__KRAKEN__WS_URL"].startswith("ws://127.0.0.1:")
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(rows) > 100
    assert set(rows[0]) == set(KEYS) - {"ts_recv"}
    assert {r["exchange"] for r in rows} == {"binance", "kraken", "coinbase"}
    assert all(Decimal(r["price"]) > 0 for r in rows)


def test_simulate_duration_and_bad_fault_name() -> None:
    out = k2("simulate", "--port", "0", "--duration", "1")
    assert out.returncode == 0 and out.stdout.decode().count("export ") == 6
    out = k2("simulate", "--port", "0", "--faults", "gaps,earthquake")
    assert out.returncode == 2 and b"unknown fault 'earthquake'" in out.stderr


def test_watch_simulate_records_normalized_trades(tmp_path: Path) -> None:
    record = tmp_path / "watch.jsonl"
    (tmp_path / "k2.toml").write_text(
        f'data_dir = "{tmp_path}/data"\n[simulator]\ntrades_per_second = 10\n'
    )
    out = k2(
        "--config",
        str(tmp_path / "k2.toml"),
        "watch",
        "--simulate",
        "--duration",
        "4",
        "--record",
        str(record),
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(rows) > 100 and all(list(r) == KEYS for r in rows)
    keys = [(r["exchange"], r["symbol"], r["trade_id"]) for r in rows]
    assert len(keys) == len(set(keys))
    summary = out.stdout.decode()
    assert (
        "binance stopped" in summary
        and "kraken stopped" in summary
        and "coinbase stopped" in summary
    )
