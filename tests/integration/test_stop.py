"""A stop ends on time whatever the store or the venues are doing, and says what it left."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from k2.simulator.faults import FAULTS
from k2.timeutil import rfc3339_to_ns
from tests.hot_support import fill_up, small_filesystem
from tests.integration.test_up import K2, env_without_k2, wait_for_api, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
GRACE_S = 6


def metric(api: str, name: str) -> float | None:
    body = urllib.request.urlopen(f"{api}/metrics", timeout=10).read().decode()
    for line in body.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "--duration"])
def test_a_stop_while_the_store_refuses_writes_ends_within_the_grace_period(
    tmp_path: Path, how: str
) -> None:
    with small_filesystem(tmp_path / "small", 512) as root:
        config = write_config(
            tmp_path, "[simulator]\ntrades_per_second = 20\n[archive]\nschedule_enabled = false\n"
        )
        config.write_text(
            config.read_text().replace(
                f'data_dir = "{tmp_path / "data"}"', f'data_dir = "{root / "data"}"'
            )
        )
        duration = ["--duration", "12"] if how == "--duration" else []
        env = env_without_k2() | {"K2_SHUTDOWN_GRACE_S": str(GRACE_S)}
        up = subprocess.Popen(
            [*K2, "--config", str(config), "up", "--simulate", *duration],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            api = wait_for_api(root / "data")
            time.sleep(2)
            fill_up(root / "data")  # from here on every insert fails: the store is unavailable
            deadline = time.monotonic() + 30
            while metric(api, "k2_writer_store_up") != 0:
                assert time.monotonic() < deadline, "the writer never saw the store as unavailable"
                time.sleep(0.5)
            if how == "--duration":
                signalled = time.monotonic()
                up.wait(60)  # --duration ends it; the stop begins at the duration
            else:
                signalled = time.monotonic()
                up.send_signal(getattr(signal, how))
                up.wait(GRACE_S + 20)
            took = time.monotonic() - signalled
        finally:
            if up.poll() is None:
                up.kill()
                up.wait()
        out, err = up.stdout.read().decode(), up.stderr.read().decode()  # type: ignore[union-attr]
        assert up.returncode == 1, err[-3000:]  # trades were left unwritten
        assert "trades not written (the next start repairs them)" in out, out
        assert "Traceback" not in err
        stopped = next(line for line in out.splitlines() if line.startswith("k2 up: stopped in"))
        assert float(stopped.split()[4]) <= GRACE_S, stopped
        if how != "--duration":
            # the grace, plus exiting
            assert took <= GRACE_S + 4, f"stopped {took:.1f} s after {how}"
        print(f"{how}: {stopped} ({took:.1f} s from the signal to the exit)")


def test_watch_record_with_every_fault_lists_what_the_stop_left_open(tmp_path: Path) -> None:
    # Faults until 3 s before the end, and a 2 s grace: repairs may still be queued at the stop.
    # Whatever is left, the recording and the gaps file together account for every trade.
    truth, record = tmp_path / "truth.jsonl", tmp_path / "watch.jsonl"
    config = write_config(
        tmp_path,
        f"""
[simulator]
seed = 5
trades_per_second = 10
faults = "{",".join(FAULTS)}"
disconnect_every_s = 3
connection_max_age_s = 4
fault_seconds = 9
record_file = "{truth}"
""",
    )
    env = env_without_k2() | {"K2_SHUTDOWN_GRACE_S": "2"}
    started = time.monotonic()
    out = subprocess.run(
        [
            *K2,
            "--config",
            str(config),
            "watch",
            "--simulate",
            "--duration",
            "12",
            "--record",
            str(record),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert time.monotonic() - started < 12 + 2 + 15, (
        "the stop took longer than its grace (start-up aside)"
    )
    assert "Traceback" not in out.stderr
    gaps_path = record.with_name(record.name + ".gaps.jsonl")
    gaps = (
        [json.loads(line) for line in gaps_path.read_text().splitlines()]
        if gaps_path.exists()
        else []
    )
    assert out.returncode == (1 if gaps else 0), out.stderr[-2000:]
    assert len(gaps) == out.stderr.count("gap still open at stop")
    recorded = [json.loads(line) for line in record.read_text().splitlines()]
    keys = [(r["exchange"], r["symbol"], r["trade_id"]) for r in recorded]
    assert len(keys) == len(set(keys)), "a trade was recorded twice"

    def covered(t: dict[str, object]) -> bool:
        for g in gaps:
            if (g["exchange"], g["symbol"]) != (t["exchange"], t["symbol"]):
                continue
            if g["kind"] == "ids" and g["first_id"] <= t["trade_id"] <= g["last_id"]:  # type: ignore[operator]
                return True
            if (
                g["kind"] == "window"
                and rfc3339_to_ns(t["ts_event"]) >= rfc3339_to_ns(g["ts_from"]) - 10**9
            ):  # type: ignore[arg-type]
                return True
        return False

    have = set(keys)
    lost = [
        t
        for t in map(json.loads, truth.read_text().splitlines())
        if (t["exchange"], t["symbol"], t["trade_id"]) not in have and not covered(t)
    ]
    assert not lost, f"{len(lost)} trades neither recorded nor in a listed gap, e.g. {lost[:3]}"
    print(
        f"k2 watch: {len(recorded)} trades recorded, {len(gaps)} gaps left open, "
        f"exit {out.returncode}"
    )
