"""K2's parsing against its peers, side by side on the same messages: raw text to a normalized trade
with exact price and amount, per venue, on one core.

Peers:
- cryptofeed (its feeds' `message_handler`, the Python feed handler most people use), given each
  venue's messages as it subscribes to them: Binance as `aggTrade` (its trades channel), Kraken
  WebSocket v2 and Coinbase Advanced Trade as K2 receives them;
- ccxt (ccxt.pro's parsers for the same WebSocket trades, after `json.loads` as its client does).
  It keeps prices as floats and times in milliseconds.

cryptofeed 3 needs Python 3.13 or newer, so the peers live in a throwaway virtual environment
(build/peers-env, made on the first run from the newest Python 3.13+ found: `--python`, then
python3.14 / python3.13 on PATH, then pyenv's) and run in a worker process. K2 runs in this one.
Passes alternate (K2, cryptofeed, ccxt, again and again), each pinned to the same core, and the best
pass of each counts, so a change in the VM's speed during the run reaches all of them alike.

Before timing, each venue's trades are checked equal on both sides: id, price, amount, taker side
and time (to the microsecond against cryptofeed; ccxt: price and amount as floats, time to the
millisecond, which is what it keeps, and Coinbase's side as the venue's field, the maker's side).

Usage: python bench/peers.py [--seconds S] [--python PATH]
Last line: `peers_min_ratio: <x>`, the smallest K2-to-peer ratio over the venues and peers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from _common import cpu_reference  # bench/_common.py
from parse import PER_MESSAGE, messages  # bench/parse.py: the simulator's encoders

from k2.exchanges import make_adapter
from k2.exchanges.base import as_parsed
from k2.records import Trade

HERE = Path(__file__).resolve().parent
ENV = HERE.parent / "build" / "peers-env"
PEERS = ("cryptofeed", "ccxt")
REQUIREMENTS = ("cryptofeed>=3,<4", "ccxt>=4,<5")
VENUES = ("binance", "kraken", "coinbase")
# Where a peer passes on the venue's side field as it is: Coinbase's `side` is the maker's, so ccxt
# reports the maker's side where K2 and cryptofeed report the taker's. Checked as such.
MAKER_SIDE = {("ccxt", "coinbase")}


def peer_python(explicit: str | None) -> str:
    """The newest Python 3.13+ on this machine (cryptofeed 3's floor)."""
    candidates = [explicit] if explicit else []
    candidates += [shutil.which(f"python3.{minor}") or "" for minor in (15, 14, 13)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        candidates += [str(p / "bin" / "python") for p in sorted(pyenv.iterdir(), reverse=True)]
    best: tuple[tuple[int, int], str] | None = None
    for path in filter(None, candidates):
        try:
            out = subprocess.run(
                [path, "-c", "import sys; print(*sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        found = (int(out[0]), int(out[1]))
        if found >= (3, 13) and (best is None or found > best[0]):
            best = (found, path)
        if explicit and path == explicit:
            break
    if best is None:
        sys.exit("peers.py: no Python 3.13 or newer found (cryptofeed 3 needs one); pass --python")
    return best[1]


def peer_env(explicit: str | None) -> Path:
    """build/peers-env with the peers installed; made on the first run."""
    python = ENV / "bin" / "python"
    check = [str(python), "-c", "import cryptofeed, ccxt"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    base = peer_python(explicit)
    print(f"making {ENV} from {base} and installing {', '.join(REQUIREMENTS)} ...", flush=True)
    subprocess.run([base, "-m", "venv", "--clear", str(ENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
        check=True,
    )
    return python


class Worker:
    """The peers' process: one JSON request per line, one JSON answer per line."""

    def __init__(self, python: Path) -> None:
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "_peers_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **request: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            sys.exit(f"peers.py: the peers' worker stopped (exit {self.proc.wait()})")
        answer = json.loads(line)
        if isinstance(answer, dict) and "error" in answer:
            sys.exit(f"peers.py: {answer['error']}")
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def as_agg_trade(raw: bytes) -> str:
    """A Binance `trade` message as the `aggTrade` message of the same single trade."""
    msg = json.loads(raw)
    d = msg["data"]
    agg = {
        "e": "aggTrade",
        "E": d["E"],
        "s": d["s"],
        "a": d["t"],
        "p": d["p"],
        "q": d["q"],
        "f": d["t"],
        "l": d["t"],
        "T": d["T"],
        "m": d["m"],
        "M": d["M"],
    }
    return json.dumps({"stream": msg["stream"].replace("@trade", "@aggTrade"), "data": agg})


def k2_trades(venue: str, msgs: list[bytes]) -> list[Trade]:
    parse, recv = make_adapter(venue).parse, time.time_ns()
    return [t for raw in msgs for t in as_parsed(parse(raw, recv)).trades]


def check_equal(venue: str, ours: list[Trade], theirs: list[list[Any]], peer: str) -> None:
    """Both sides made the same trades, or the bench stops and says where they differ."""
    if len(ours) != len(theirs):
        sys.exit(f"peers.py: {venue}: K2 made {len(ours)} trades, {peer} {len(theirs)}")
    for t, (ident, price, amount, side, when) in zip(ours, theirs, strict=True):
        if peer == "cryptofeed":
            same = (
                t.trade_id == ident
                and t.price == Decimal(price)
                and t.amount == Decimal(amount)
                and t.taker_side == side
                and t.ts_event // 1_000 == when
            )
        else:  # floats and milliseconds
            same = (
                t.trade_id == ident
                and float(t.price) == float(price)
                and float(t.amount) == float(amount)
                and (t.venue_side.lower() if (peer, venue) in MAKER_SIDE else t.taker_side) == side
                and t.ts_event // 1_000_000 == when
            )
        if not same:
            sys.exit(f"peers.py: {venue}: K2 {t} but {peer} {[ident, price, amount, side, when]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="time per venue")
    parser.add_argument("--python", help="the Python 3.13+ to make the peers' environment from")
    args = parser.parse_args()
    python = peer_env(args.python)
    worker = Worker(python)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})  # one core, the same one for both processes
        os.sched_setaffinity(worker.proc.pid, {0})
    versions = worker.ask(op="versions")
    print(
        f"K2 on Python {sys.version.split()[0]}; peers on Python {versions['python']}: "
        f"cryptofeed {versions['cryptofeed']}, ccxt {versions['ccxt']}; "
        f"cpu reference {cpu_reference():,.0f} msg/s (bench/_common.py)"
    )
    ours_msgs = {v: messages(v) for v in VENUES}  # as K2 subscribes: Binance times in µs
    # The peers' messages: the same trades; Binance with millisecond times as its default streams
    # send them (cryptofeed's aggTrade and ccxt's trade channel both read milliseconds).
    check_msgs = {"binance": messages("binance", micro=False)}
    check_msgs |= {v: ours_msgs[v] for v in ("kraken", "coinbase")}
    peer_msgs = {
        "cryptofeed": {"binance": [as_agg_trade(m) for m in check_msgs["binance"]]},
        "ccxt": {"binance": [m.decode() for m in check_msgs["binance"]]},
    }
    for peer in PEERS:
        peer_msgs[peer] |= {v: [m.decode() for m in ours_msgs[v]] for v in ("kraken", "coinbase")}
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="k2-peers-") as tmp:
        path = Path(tmp) / "messages.json"
        path.write_text(json.dumps(peer_msgs))
        worker.ask(op="load", file=str(path))
        for venue in VENUES:
            ours = k2_trades(venue, check_msgs[venue])
            for peer in PEERS:
                check_equal(venue, ours, worker.ask(op="trades", peer=peer, venue=venue), peer)
            print(f"{venue}: {len(ours):,} trades the same on all sides")
        print(
            f"\n{'venue':9} {'trades/msg':>10} {'K2 trades/s':>12} {'cryptofeed':>11} "
            f"{'ratio':>6} {'ccxt':>10} {'ratio':>6}"
        )
        recv = time.time_ns()
        for venue in VENUES:
            msgs, n = ours_msgs[venue], len(ours_msgs[venue]) * PER_MESSAGE[venue]
            parse = make_adapter(venue).parse
            best = dict.fromkeys(("k2", *PEERS), 0.0)
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                for raw in msgs:
                    parse(raw, recv)
                best["k2"] = max(best["k2"], n / (time.perf_counter() - start))
                for peer in PEERS:
                    seconds = worker.ask(op="time", peer=peer, venue=venue)["seconds"]
                    best[peer] = max(best[peer], n / seconds)
            rows[venue] = best
            print(
                f"{venue:9} {PER_MESSAGE[venue]:>10} {best['k2']:>12,.0f} "
                f"{best['cryptofeed']:>11,.0f} {best['k2'] / best['cryptofeed']:>5.2f}x "
                f"{best['ccxt']:>10,.0f} {best['k2'] / best['ccxt']:>5.2f}x",
                flush=True,
            )
    worker.close()
    print(f"cpu reference at the end {cpu_reference():,.0f} msg/s")
    smallest = {p: min(r["k2"] / r[p] for r in rows.values()) for p in PEERS}
    print("smallest ratio per peer: " + ", ".join(f"{p} {x:.2f}x" for p, x in smallest.items()))
    print(f"peers_min_ratio: {min(smallest.values()):.2f}")


if __name__ == "__main__":
    main()
