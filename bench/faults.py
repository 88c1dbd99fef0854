"""The failure-mode matrix: each fault against a running K2, in each shape where it applies.

For every mode and shape it starts a fresh K2 against the simulator (the market opens once each
symbol has a subscriber, and closes after --market seconds; the simulator records every trade it
made), lets capture settle, starts the fault, ends it, and measures:

- detect: seconds from the fault's start until the signal an alert is built on is true in
  /metrics (the signal is named in each row; `-` never, within the run);
- recover: seconds from the fault's end until K2 is whole again: every process answering, every
  venue connected with new trades arriving, no gap open, the writer taking writes (cluster: the
  ingest group caught up), and for the archive modes an offload succeeding;
- lost: once the market closed and K2 stopped, the tape's trades missing from silver; silver rows
  the tape lacks, doubled or different are counted beside it;
- cold: after a final offload, rows by which the archive and hot differ (k2 reconcile).

A fault the simulator plays is started on demand on its ports (GET /_sim/fault); the hot store's
outage is the store's failpoint (K2_FAILPOINT_STORE_DOWN, hotstore/clickhouse.py); the broker's
is SIGSTOP (Tansu keeps its logs in memory, so a restart would lose them); object storage is a
moto S3 server under SIGSTOP; a full disk is a tmpfs filled to its last byte.

The archive modes run in the embedded shape only. In the cluster shape the archive flows run in
`k2 api` or `k2 flows serve`, reading the ClickHouse server that `k2 ingest` writes; no ClickHouse
server installs on this machine, and chDB allows one process per data path, so here the cluster's
ingest and its flows cannot run at once. In the cluster shape the hot store is `k2 ingest`'s chDB
(the failpoint and the full disk act on it).

Usage: python bench/faults.py [--modes M ...] [--shapes embedded cluster] [--fault S]
Last line: `faults_max_recovery_s: <s>` (over the modes K2 controls)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import free_port, scratch_dir  # bench/_common.py
from _faults_shapes import VENUES, Metrics, Run

TARGET_S = 30.0
MOTO_PIDS: dict[str, int] = {}  # a run's directory: its S3 server


@dataclass
class Ctx:
    """One mode's run: when things happened, and what the mode set up."""

    run: Run
    fault_s: float
    started: float = 0.0  # the fault's start (monotonic)
    ended: float = 0.0  # its end
    offload_ok_at: float | None = None  # monotonic, an offload after the fault succeeded
    notes: list[str] = field(default_factory=list)
    aside: dict[str, object] = field(default_factory=dict)  # a mode's own things (moto, ...)


@dataclass
class Mode:
    name: str
    shapes: tuple[str, ...]
    signal: str  # what "detected" means
    inject: Callable[[Ctx], None]
    clear: Callable[[Ctx], None]
    detected: Callable[[Metrics, Ctx], bool]
    offload: bool = False  # whole again includes an offload succeeding after the fault
    depends_on: str = ""  # recovery is the venue's or the operator's, not K2's
    prepare: Callable[[Path], contextlib.AbstractContextManager[dict[str, str]]] | None = None
    hold_s: float | None = None  # the fault's length, if not --fault


# -- the modes ------------------------------------------------------------------------------------
def _nothing(_: Ctx) -> None:
    return None


def _feeds_disconnected(m: Metrics, _: Ctx) -> bool:
    return any(m.min("k2_feed_connected", venue=v) == 0 for v in VENUES)


def _outage(ctx: Ctx) -> None:
    ctx.run.venue_fault("outage", ctx.fault_s)


def _silent(ctx: Ctx) -> None:
    ctx.run.venue_fault("silent", ctx.fault_s)


def _silent_detected(m: Metrics, _: Ctx) -> bool:
    return (m.sum("k2_feed_watchdog_trips_total") or 0) > 0


def _ratelimit(ctx: Ctx) -> None:
    ctx.run.venue_fault("ratelimit", ctx.fault_s)
    ctx.run.venue_fault("outage", 3)  # a gap to repair while REST refuses


def _ratelimited(m: Metrics, _: Ctx) -> bool:
    return (m.sum("k2_feed_rest_rate_limited_total") or 0) > 0


def _kill(name: str) -> Callable[[Ctx], None]:
    def inject(ctx: Ctx) -> None:
        ctx.run.processes[name].kill()

    return inject


def _restart(name: str) -> Callable[[Ctx], None]:
    def clear(ctx: Ctx) -> None:
        ctx.run.processes[name].start()

    return clear


def _process_down(name: str) -> Callable[[Metrics, Ctx], bool]:
    return lambda m, _: name in m.down


def _signal_broker(sig: signal.Signals) -> Callable[[Ctx], None]:
    def send(ctx: Ctx) -> None:
        assert ctx.run.broker is not None
        os.kill(ctx.run.broker.pid, sig)

    return send


def _broker_down(m: Metrics, _: Ctx) -> bool:
    return m.min("k2_bus_broker_up") == 0


@contextlib.contextmanager
def _store_failpoint(work: Path) -> Iterator[dict[str, str]]:
    yield {"K2_FAILPOINT_STORE_DOWN": str(work / "store-down")}


def _store_down(ctx: Ctx) -> None:
    (ctx.run.work / "store-down").touch()


def _store_up(ctx: Ctx) -> None:
    (ctx.run.work / "store-down").unlink()


def _writer_down(m: Metrics, _: Ctx) -> bool:
    return m.min("k2_writer_store_up") == 0


def _offload_in_background(ctx: Ctx, until_ok: bool) -> threading.Thread:
    """Run offloads through k2 up's API, one after another, until one succeeds (or just one)."""

    def loop() -> None:
        while True:
            try:
                ctx.run.flow("offload")
            except Exception as err:  # noqa: BLE001 - the fault may fail it: say so, go on
                ctx.notes.append(f"offload failed: {str(err)[:120]}")
                if until_ok:
                    time.sleep(1)
                    continue
                return
            if ctx.ended and ctx.offload_ok_at is None:
                ctx.offload_ok_at = time.monotonic()
            return

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def _moto(work: Path) -> Iterator[dict[str, str]]:
    """An S3 server of its own (moto), and K2's archive in a bucket on it."""
    import boto3

    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    key = "k2-bench"
    for _ in range(100):
        try:
            boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id=key,
                aws_secret_access_key=key,
            ).create_bucket(Bucket="k2-faults")
            break
        except Exception:  # noqa: BLE001 - not listening yet
            time.sleep(0.1)
    MOTO_PIDS[str(work)] = proc.pid
    try:
        yield {
            "K2_ARCHIVE__WAREHOUSE": "s3://k2-faults/warehouse",
            "K2_ARCHIVE__S3__ENDPOINT": endpoint,
            "K2_ARCHIVE__S3__ACCESS_KEY_ID": key,
            "K2_ARCHIVE__S3__SECRET_ACCESS_KEY": key,
        }
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


def _s3_down(ctx: Ctx) -> None:
    os.kill(MOTO_PIDS[str(ctx.run.work)], signal.SIGSTOP)
    ctx.aside["offload"] = _offload_in_background(ctx, until_ok=False)


def _s3_up(ctx: Ctx) -> None:
    os.kill(MOTO_PIDS[str(ctx.run.work)], signal.SIGCONT)
    previous = ctx.aside["offload"]
    assert isinstance(previous, threading.Thread)
    previous.join(300)  # the offload the outage caught, finished or failed
    _offload_in_background(ctx, until_ok=True)


def _offload_failing(m: Metrics, _: Ctx) -> bool:
    return (m.sum("k2_offload_failures_total") or 0) > 0 or (
        m.min("k2_offload_running_seconds") or 0
    ) > 10


def _kill_mid_offload(ctx: Ctx) -> None:
    offload = _offload_in_background(ctx, until_ok=False)
    time.sleep(0.5)
    ctx.aside["mid_offload"] = offload.is_alive()
    ctx.run.processes["k2 up"].kill()


def _restart_and_offload(ctx: Ctx) -> None:
    """Start k2 up again (as a supervisor would), and offload once its API answers."""
    ctx.run.processes["k2 up"].start()

    def offload_once_up() -> None:
        while True:  # the API answers once chDB is open
            with contextlib.suppress(Exception):
                ctx.run.client.get(f"{ctx.run.api}/health", timeout=2)
                break
            time.sleep(0.2)
        _offload_in_background(ctx, until_ok=True).join()

    threading.Thread(target=offload_once_up, daemon=True).start()


@contextlib.contextmanager
def _small_disk(work: Path) -> Iterator[dict[str, str]]:
    """The data directory on a 256 MB tmpfs of its own: a disk that can be filled safely."""
    data = work / "data"
    data.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "k2-bench", str(data)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise Skip(f"cannot mount a small tmpfs (needs root and mount(8)): {done.stderr.strip()}")
    try:
        yield {}
    finally:
        subprocess.run(["umount", "-l", str(data)], capture_output=True, check=False)


def _fill_disk(ctx: Ctx) -> None:
    ballast = ctx.run.data / "ballast"
    chunk = b"\1" * 2**20
    with ballast.open("wb", buffering=0) as f:
        while len(chunk) >= 512:
            try:
                f.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]


def _free_disk(ctx: Ctx) -> None:
    (ctx.run.data / "ballast").unlink()


def _disk_low(m: Metrics, _: Ctx) -> bool:
    free, size = m.min("k2_storage_free_bytes"), m.min("k2_storage_size_bytes")
    return free is not None and size is not None and free / size < 0.10


class Skip(Exception):
    """A mode that cannot run here, with the reason."""


BOTH = ("embedded", "cluster")
MODES = [
    Mode(
        "venue disconnect",
        BOTH,
        "k2_feed_connected == 0",
        _outage,
        _nothing,
        _feeds_disconnected,
        hold_s=5,
    ),
    Mode(
        "venue silent",
        BOTH,
        "k2_feed_watchdog_trips_total > 0",
        _silent,
        _nothing,
        _silent_detected,
    ),
    Mode(
        "REST rate-limited in a repair",
        BOTH,
        "k2_feed_rest_rate_limited_total > 0",
        _ratelimit,
        _nothing,
        _ratelimited,
    ),
    Mode(
        "feed process kill -9",
        ("cluster",),
        "the feed's /metrics gone (K2Down)",
        _kill("feed kraken"),
        _restart("feed kraken"),
        _process_down("feed kraken"),
        hold_s=5,
    ),
    Mode(
        "ingest worker kill -9",
        ("cluster",),
        "ingest's /metrics gone (K2Down)",
        _kill("ingest"),
        _restart("ingest"),
        _process_down("ingest"),
        hold_s=5,
    ),
    Mode(
        "broker down",
        ("cluster",),
        "k2_bus_broker_up == 0",
        _signal_broker(signal.SIGSTOP),
        _signal_broker(signal.SIGCONT),
        _broker_down,
    ),
    Mode(
        "store down",
        BOTH,
        "k2_writer_store_up == 0",
        _store_down,
        _store_up,
        _writer_down,
        prepare=_store_failpoint,
    ),
    Mode(
        "object storage down in an offload",
        ("embedded",),
        "an offload failing, or running 10 s (K2OffloadCycleSlow at 300 s)",
        _s3_down,
        _s3_up,
        _offload_failing,
        offload=True,
        prepare=_moto,
    ),
    Mode(
        "k2 up kill -9 mid-offload",
        ("embedded",),
        "k2 up's /metrics gone (K2Down)",
        _kill_mid_offload,
        _restart_and_offload,
        _process_down("k2 up"),
        offload=True,
        hold_s=2,
    ),
    Mode(
        "disk full",
        BOTH,
        "k2_storage_free_bytes / size < 0.10 (K2DiskSpaceLow)",
        _fill_disk,
        _free_disk,
        _disk_low,
        depends_on="operator",
        prepare=_small_disk,
    ),
]


# -- one run --------------------------------------------------------------------------------------
@dataclass
class Row:
    mode: str
    shape: str
    signal: str
    detect_s: float | None = None
    recover_s: float | None = None
    found: dict[str, object] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""


class Recovery:
    """Whether K2 is whole again: everything answering, every venue connected with trades newer
    than the fault's end, no gap open, the writer up (cluster: the group caught up)."""

    def __init__(self, shape: str) -> None:
        self.shape = shape
        self.base: dict[str, float] = {}  # each venue's trades counted at the first scrape after

    def whole(self, m: Metrics, ctx: Ctx, offload: bool) -> bool:
        live = True
        for venue in VENUES:
            trades = m.sum("k2_feed_trades_total", venue=venue)
            if trades is None:
                live = False
                continue
            if venue not in self.base or trades < self.base[venue]:  # first look, or restarted
                self.base[venue] = trades
            live &= trades > self.base[venue] and m.min("k2_feed_connected", venue=venue) == 1
        if self.shape == "cluster":
            lag = m.sum("k2_bus_consumer_lag_messages")
            live &= lag is not None and lag <= 100 and m.min("k2_bus_broker_up") == 1
        return (
            live
            and not m.down
            and (m.sum("k2_feed_gaps_open") or 0) == 0
            and m.min("k2_writer_store_up") == 1
            and (not offload or ctx.offload_ok_at is not None)
        )


def wait_live(run: Run, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = run.scrape()
        if not m.down and all(
            m.min("k2_feed_connected", venue=v) == 1
            and (m.sum("k2_feed_trades_total", venue=v) or 0)
            for v in VENUES
        ):
            return
        time.sleep(0.5)
    raise RuntimeError(f"K2 was not capturing every venue within {timeout_s:.0f} s")


def measure(mode: Mode, shape: str, args: argparse.Namespace) -> Row:
    row = Row(mode.name, shape, mode.signal)
    work = Path(tempfile.mkdtemp(prefix="k2-faults-")) if args.keep else scratch_dir("k2-faults-")
    prepare = mode.prepare(work) if mode.prepare else contextlib.nullcontext({})
    with contextlib.ExitStack() as stack:
        try:
            env = stack.enter_context(prepare)
        except Skip as why:
            row.skipped = str(why)
            return row
        _run_mode(mode, shape, args, row, Run(shape, work, args.market, args.rate, env))
    if args.keep:
        row.notes.append(f"logs in {work}")
    return row


def _run_mode(mode: Mode, shape: str, args: argparse.Namespace, row: Row, run: Run) -> None:
    """Start K2, play the fault, measure, stop, check: into `row`."""
    ctx = Ctx(run, mode.hold_s if mode.hold_s is not None else args.fault)
    try:
        run.start()
        wait_live(run)
        opened = time.monotonic()
        time.sleep(args.settle)
        ctx.started = time.monotonic()
        mode.inject(ctx)
        recovery = Recovery(shape)
        while True:
            now = time.monotonic()
            if not ctx.ended and now - ctx.started >= ctx.fault_s:
                mode.clear(ctx)
                ctx.ended = time.monotonic()
            m = run.scrape()
            if row.detect_s is None and mode.detected(m, ctx):
                row.detect_s = time.monotonic() - ctx.started
            if ctx.ended and recovery.whole(m, ctx, mode.offload):
                row.recover_s = time.monotonic() - ctx.ended
                break
            if ctx.ended and now - ctx.ended > args.give_up:
                break
            time.sleep(0.2)
        # the market closes, the last repairs run, and K2 stops
        time.sleep(max(0.0, opened + args.market - time.monotonic()) + 5)
        row.exits = run.stop()
        row.found = run.check()
    except Exception as err:  # noqa: BLE001 - one mode's failure is a row, not the end
        row.notes.append(f"{type(err).__name__}: {err}")
        with contextlib.suppress(Exception):
            row.exits = run.stop()
    row.notes += ctx.notes
    if "mid_offload" in ctx.aside and not ctx.aside["mid_offload"]:
        row.notes.append("the offload had finished before the kill")


# -- the table ------------------------------------------------------------------------------------
def cell(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def verdict(row: Row, mode: Mode) -> str:
    f = row.found
    if row.skipped:
        return "not run"
    if "error" in f or "lost" not in f:
        return "FAIL (not checked)"
    whole = (
        f["lost"] == f["extra"] == f["differ"] == f["doubled"] == 0
        and not f.get("cold_vs_hot_rows")
        and not f.get("cold_checksums_differ")
    )
    if not whole:
        return "FAIL (data)"
    if row.detect_s is None:
        return "FAIL (not detected)"
    if row.recover_s is None or (not mode.depends_on and row.recover_s > TARGET_S):
        return "FAIL (recovery)"
    return "ok"


def seconds(text: str) -> float:
    """A positive number (argparse type): anything else is one line and exit 2."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [m.name for m in MODES]
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=names,
        default=names,
        metavar="MODE",
        help=f"the modes to run (default: all): {'; '.join(names)}",
    )
    parser.add_argument("--shapes", nargs="+", choices=BOTH, default=list(BOTH))
    parser.add_argument("--fault", type=seconds, default=30.0, help="seconds a fault lasts")
    parser.add_argument("--rate", type=seconds, default=2.0, help="trades/s per symbol")
    parser.add_argument(
        "--market",
        type=seconds,
        default=80.0,
        help="seconds the market trades, from the first subscription",
    )
    parser.add_argument(
        "--settle", type=seconds, default=5.0, help="seconds of capture before a fault"
    )
    parser.add_argument(
        "--give-up",
        type=seconds,
        default=60.0,
        help="seconds after a fault's end to wait for recovery",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep each run's directory (logs, data) and say where"
    )
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"faults of {args.fault:g} s; {args.rate:g} trades/s per symbol; recovery target "
        f"{TARGET_S:g} s",
        flush=True,
    )
    header = (
        f"{'mode':36} {'shape':9} {'detect s':>8} {'recover s':>9} {'lost':>5} {'cold':>5}  verdict"
    )
    print(header, flush=True)
    worst = 0.0
    for mode in MODES:
        if mode.name not in args.modes:
            continue
        for shape in mode.shapes:
            if shape not in args.shapes:
                continue
            row = measure(mode, shape, args)
            f = row.found
            print(
                f"{mode.name:36} {shape:9} {cell(row.detect_s):>8} {cell(row.recover_s):>9} "
                f"{f.get('lost', '-')!s:>5} {f.get('cold_vs_hot_rows', '-')!s:>5}  "
                f"{verdict(row, mode)}",
                flush=True,
            )
            details = [f"signal: {row.signal}"]
            if mode.depends_on:
                details.append(f"recovery depends on the {mode.depends_on}")
            if f:
                details.append(", ".join(f"{k} {v}" for k, v in f.items()))
            if any(code != 0 for code in row.exits.values()):
                details.append(f"exits {row.exits}")
            details += [row.skipped] if row.skipped else []
            details += row.notes[:3]
            for line in details:
                print(f"    {line}", flush=True)
            if not mode.depends_on and row.recover_s is not None:
                worst = max(worst, row.recover_s)
            elif not mode.depends_on and not row.skipped:
                worst = float("inf")
    print(f"faults_max_recovery_s: {worst:.1f}")


if __name__ == "__main__":
    main()
