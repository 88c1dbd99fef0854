"""bench/faults.py's running K2: the simulator with a ground-truth tape, then K2 in one shape, with
its processes, its /metrics, and the checks made once it stopped (silver against the tape, the
archive against hot).

Embedded: one `k2 up`. Cluster: a Kafka-protocol broker (Tansu), one `k2 feed` per venue and one
`k2 ingest` (two consumer-group members), each a process with its own /metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from _common import free_port, start_simulator  # bench/_common.py
from cluster import start_broker
from prometheus_client.parser import text_string_to_metric_families

VENUES = ("binance", "kraken", "coinbase")
K2 = [sys.executable, "-m", "k2"]
Labels = frozenset[tuple[str, str]]


@dataclass
class Metrics:
    """One scrape of every process: samples by name, and which processes did not answer."""

    samples: dict[str, list[tuple[Labels, float]]] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)

    def values(self, name: str, **labels: str) -> list[float]:
        """`name`'s samples that carry these labels (and any others)."""
        return [v for ls, v in self.samples.get(name, []) if set(labels.items()) <= ls]

    def sum(self, name: str, **labels: str) -> float | None:
        """The sum of those samples; None if there are none."""
        values = self.values(name, **labels)
        return sum(values) if values else None

    def min(self, name: str, **labels: str) -> float | None:
        values = self.values(name, **labels)
        return min(values) if values else None


@dataclass
class Process:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    metrics_port: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen([*K2, *self.args], env=self.env, stdout=log, stderr=log)

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, grace_s: float = 60.0) -> int:
        """SIGTERM; the exit code (killed, -9, past `grace_s`)."""
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else 0
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            return -9


class Run:
    """A simulator and K2 in one shape, in a fresh directory."""

    def __init__(self, shape: str, work: Path, market_s: float, rate: float, env: dict[str, str]):
        self.shape, self.work, self.market_s, self.rate = shape, work, market_s, rate
        self.data = work / "data"
        self.tape = work / "tape.jsonl"
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
        self.base_env |= {"K2_LOG_LEVEL": "INFO"} | env
        self.sim: subprocess.Popen[bytes] | None = None
        self.venue_ports: dict[str, int] = {}
        self.processes: dict[str, Process] = {}
        self.broker: subprocess.Popen[bytes] | None = None
        self.api = ""
        self.client = httpx.Client(timeout=5)

    # -- starting -------------------------------------------------------------------------------
    def start(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self._start_simulator()
        if self.shape == "embedded":
            port = free_port()
            self.api = f"http://127.0.0.1:{port}"
            self._add("k2 up", ["up", "--data-dir", str(self.data), "--port", str(port)], port)
        else:
            self._start_broker()
            for venue in VENUES:
                self._add(f"feed {venue}", ["feed", "--venue", venue], free_port())
            self._add("ingest", ["ingest", "--data-dir", str(self.data)], free_port())
        for process in self.processes.values():
            process.start()

    def _start_simulator(self) -> None:
        self.sim, exports = start_simulator(
            self.rate,
            extra=[
                "--record",
                str(self.tape),
                "--clients",
                "1",  # the market opens once each symbol has a subscriber: the tape is all K2's
                "--market-for",
                str(self.market_s),
            ],
            env=self.base_env,
            stderr=(self.work / "simulator.log").open("wb"),
        )
        self.base_env |= exports
        for key, value in exports.items():
            if key.endswith("__REST_URL"):
                venue = key.split("__")[1].lower()
                self.venue_ports[venue] = int(urlsplit(value).port or 0)

    def _start_broker(self) -> None:
        self.broker, address = start_broker()  # bench/cluster.py
        self.base_env |= {
            "K2_BUS__BOOTSTRAP_SERVERS": address,
            "K2_BUS__SESSION_TIMEOUT_MS": "6000",
            "K2_BUS__CONSUMERS": "2",
        }

    def _add(self, name: str, args: list[str], port: int) -> None:
        env = self.base_env | {"K2_BUS__METRICS_PORT": str(port)}
        log = self.work / f"{name.replace(' ', '-')}.log"
        self.processes[name] = Process(name, args, env, log, port)

    # -- watching -------------------------------------------------------------------------------
    def scrape(self) -> Metrics:
        m = Metrics()
        for process in self.processes.values():
            try:
                text = self.client.get(
                    f"http://127.0.0.1:{process.metrics_port}/metrics", timeout=2
                ).text
            except httpx.HTTPError:
                m.down.add(process.name)
                continue
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    m.samples.setdefault(s.name, []).append((frozenset(s.labels.items()), s.value))
        return m

    def venue_fault(self, name: str, seconds: float) -> None:
        """Start simulator fault `name` on every venue (k2.simulator.server.ON_DEMAND)."""
        for port in self.venue_ports.values():
            self.client.get(
                f"http://127.0.0.1:{port}/_sim/fault", params={"name": name, "seconds": seconds}
            ).raise_for_status()

    def flow(self, name: str) -> dict[str, object]:
        """Run an archive flow through k2 up's API (embedded)."""
        reply = httpx.post(f"{self.api}/api/v1/flows/{name}", json={}, timeout=600)
        reply.raise_for_status()
        return dict(reply.json())

    # -- stopping and checking ------------------------------------------------------------------
    def stop(self) -> dict[str, int]:
        """Stop every process (feeds first, so ingest drains them); their exit codes."""
        codes = {}
        for name in [n for n in self.processes if n.startswith("feed")] + [
            n for n in self.processes if not n.startswith("feed")
        ]:
            codes[name] = self.processes[name].stop()
        if self.broker is not None:
            self.broker.kill()
            self.broker.wait(10)
        if self.sim is not None:
            self.sim.terminate()
            self.sim.wait(30)
        self.client.close()
        return codes

    def check(self) -> dict[str, object]:
        """Silver against the tape, then an offload and a reconcile: run in a child process (one
        chDB path per process)."""
        done = subprocess.run(
            [sys.executable, __file__, str(self.data), str(self.tape)],
            env=self.base_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "?"}
        found: dict[str, object] = json.loads(done.stdout)
        for flow in ("offload", "reconcile"):
            ran = subprocess.run(
                [*K2, flow, "--data-dir", str(self.data), "--json"],
                env=self.base_env,
                capture_output=True,
                text=True,
                check=False,
            )
            if flow == "reconcile":
                result = json.loads(ran.stdout)
                found["cold_vs_hot_rows"] = sum(
                    abs(d["hot_rows"] - d["archive_rows"])
                    for r in result.values()
                    for d in r["differences"]
                )
                found["cold_checksums_differ"] = sum(
                    d["hot_checksum"] != d["archive_checksum"]
                    for r in result.values()
                    for d in r["differences"]
                )
            elif ran.returncode != 0:
                return found | {"error": f"k2 offload: {ran.stderr.strip()[-300:]}"}
        return found


def silver_against_tape(data: Path, tape: Path) -> dict[str, int]:
    """Trades of the tape missing from silver, silver rows the tape lacks, and rows that differ."""
    from k2.hotstore.clickhouse import ClickHouseStore
    from k2.timeutil import rfc3339_to_ns

    truth = {}
    for line in tape.read_text().splitlines():
        r = json.loads(line)
        truth[(r["exchange"], r["symbol"], r["trade_id"])] = (
            Decimal(r["price"]),
            Decimal(r["amount"]),
            r["taker_side"],
            rfc3339_to_ns(r["ts_event"]),
        )
    store = ClickHouseStore.at(data / "hot")
    try:
        rows = store.rows(
            "SELECT exchange, symbol, trade_id, toString(price), toString(amount), "
            "toString(taker_side), toUnixTimestamp64Nano(ts_event) FROM k2.silver_trades"
        )
    finally:
        store.close()
    silver = {(e, s, i): (Decimal(p), Decimal(a), side, ts) for e, s, i, p, a, side, ts in rows}
    return {
        "tape": len(truth),
        "silver": len(rows),
        "lost": len(truth.keys() - silver.keys()),
        "extra": len(silver.keys() - truth.keys()),
        "doubled": len(rows) - len(silver),
        "differ": sum(silver[k] != truth[k] for k in truth.keys() & silver.keys()),
    }


if __name__ == "__main__":  # the check's child process: DATA TAPE
    print(json.dumps(silver_against_tape(Path(sys.argv[1]), Path(sys.argv[2]))))
