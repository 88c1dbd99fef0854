"""`k2 export` and `k2 replay`: stored trades (or candles) of any range, from both tiers, in
bounded memory; through the running `k2 up` when there is one (its /api/export routes, as an
Arrow stream), or from the stopped data directory itself."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from k2.cli.common import reported, settings
from k2.cli.query import DATA_DIR, END, SYMBOL, VENUE, LazyLake
from k2.cli.remote import client, raise_for, reach
from k2.errors import ConfigError, InputError
from k2.hotstore.owner import OwnedStore
from k2.hotstore.queries import timeframe as check_timeframe
from k2.instruments import load_instruments, resolve_filters
from k2.query import stream, tiers
from k2.query.frames import CANDLE_SCHEMA, TRADE_SCHEMA
from k2.query.replay import runs
from k2.query.replay import speed as replay_speed
from k2.settings import Settings
from k2.timeutil import ns_to_rfc3339, user_time

Consume = Callable[[Iterator[stream.Chunk]], int]

REQUIRED_FROM = typer.Option(
    ..., "--from", help="From this time: RFC 3339, a date, or a duration ago (15m, 2h, 3d)."
)
TIMEFRAME = typer.Option(
    None, "--timeframe", help="Export this timeframe's candles (1m ... 1d) instead of trades."
)


class _Chunks:
    """Where the rows come from: the running `k2 up` or the stopped data directory."""

    def __init__(
        self, cfg: Settings, data_dir: Path | None, tf: str | None, f: tiers.Filter
    ) -> None:
        self.cfg, self.data_dir, self.tf, self.f = cfg, data_dir or cfg.data_dir, tf, f
        self.column = "ts_event" if tf is None else "window_start"
        self.schema = TRADE_SCHEMA if tf is None else CANDLE_SCHEMA

    def run(self, consume: Consume, role: str) -> int:
        """Hand the chunks of the range, in time order, to `consume`."""
        return reach(
            self.data_dir, role, self.cfg.hotstore, self._remote(consume), self._local(consume)
        )

    def _local(self, consume: Consume) -> Callable[[OwnedStore], int]:
        def local(owner: OwnedStore) -> int:
            lake = LazyLake(self.cfg, self.data_dir)
            assert self.f.start_ns is not None and self.f.end_ns is not None
            try:
                if self.tf is None:
                    chunks = stream.trade_chunks(
                        owner.store, lake, self.f, self.f.start_ns, self.f.end_ns
                    )
                else:
                    chunks = stream.candle_chunks(
                        owner.store, lake, self.tf, self.f, self.f.start_ns, self.f.end_ns
                    )
                return consume(chunks)
            finally:
                lake.close()

        return local

    def _remote(self, consume: Consume) -> Callable[[str], int]:
        def remote(url: str) -> int:
            return consume(self._fetch(url))

        return remote

    def _fetch(self, url: str) -> Iterator[stream.Chunk]:
        f = self.f
        assert f.start_ns is not None and f.end_ns is not None
        params: dict[str, Any] = {
            "from": ns_to_rfc3339(f.start_ns),
            "to": ns_to_rfc3339(f.end_ns),
            "format": "arrow",
        }
        params |= {k: v for k, v in (("venue", f.venue), ("symbol", f.symbol)) if v}
        path = "/api/v1/export/trades"
        if self.tf is not None:
            path, params["timeframe"] = "/api/v1/export/candles", self.tf
        try:
            with (
                client(url, self.cfg.api, timeout=None) as http,
                http.stream("GET", path, params=params) as resp,
            ):
                if resp.status_code != 200:
                    resp.read()
                    raise_for(resp, url)
                reader = pa.ipc.open_stream(_ByteStream(resp.iter_bytes()))
                for batch in reader:
                    rows = pa.Table.from_batches([batch], self.schema)
                    at = pc.max(rows.column(self.column)).value if len(rows) else f.start_ns
                    yield stream.Chunk(rows, int(at))
        except httpx.HTTPError as err:
            raise ConfigError(f"the running k2 up at {url} stopped answering: {err}") from None


class _ByteStream:
    """A file-like view of an iterator of byte strings, for Arrow's stream reader."""

    closed = False

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces, self._buffer = pieces, bytearray()

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        n = len(self._buffer) if n < 0 else min(n, len(self._buffer))
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def readable(self) -> bool:
        return True


def _filter(
    cfg: Settings, venue: str | None, symbol: str | None, start: str, end: str | None
) -> tiers.Filter:
    instruments = load_instruments(cfg.instruments_file)
    venue, symbol = resolve_filters(instruments, venue, symbol)
    start_ns = user_time(start, "--from")
    end_ns = time.time_ns() if end is None else user_time(end, "--to")
    if end_ns <= start_ns:
        raise InputError(
            f"--to ({ns_to_rfc3339(end_ns)}) must be after --from ({ns_to_rfc3339(start_ns)})"
        )
    return tiers.Filter(venue, symbol, start_ns, end_ns)


@contextlib.contextmanager
def _progress(f: tiers.Filter, what: str) -> Iterator[Callable[[stream.Chunk], None]]:
    """A progress bar on stderr over the time range: call the yielded function per chunk."""
    assert f.start_ns is not None and f.end_ns is not None
    start, total = f.start_ns, f.end_ns - f.start_ns
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with bar:
        task = bar.add_task(what, total=total / 1e9, rows=0)
        count = 0

        def advance(chunk: stream.Chunk) -> None:
            nonlocal count
            count += len(chunk.rows)
            bar.update(task, completed=(chunk.end_ns - start) / 1e9, rows=count)

        yield advance
        bar.update(task, completed=total / 1e9)


def export(
    out: Path = typer.Option(
        ...,
        "--out",
        help="The file to write (replaced when the export is whole), or - for standard output.",
    ),
    start: str = REQUIRED_FROM,
    end: str = END,
    venue: str = VENUE,
    symbol: str = SYMBOL,
    format: stream.Format = typer.Option(
        stream.Format.parquet, "--format", help="parquet, csv, jsonl, or arrow (IPC stream)."
    ),
    timeframe: str = TIMEFRAME,
    data_dir: Path = DATA_DIR,
) -> None:
    """Export stored trades (or candles) of a time range to a file, from the hot store and the
    archive alike, in time order, with a progress bar; no row limit, bounded memory."""
    with reported():
        cfg = settings()
        if timeframe is not None:
            check_timeframe(timeframe)
        f = _filter(cfg, venue, symbol, start, end)
        to_stdout = str(out) == "-"
        if not to_stdout and out.is_dir():
            raise InputError(f"--out {out} is a directory; name a file")
        if not to_stdout and not out.parent.is_dir():
            raise InputError(f"--out {out}: no directory {out.parent}")
        # A regular file is written beside it and renamed when whole, so a file at `out` is
        # always a whole export; standard output, a pipe or a device is written as it comes.
        direct = to_stdout or (out.exists() and not out.is_file())
        target = out if direct else out.with_name(f".{out.name}.partial")
        source = _Chunks(cfg, data_dir, timeframe, f)
        what = "trades" if timeframe is None else f"{timeframe} candles"
        written = [0]

        def consume(chunks: Iterator[stream.Chunk]) -> int:
            rows = 0
            with contextlib.ExitStack() as stack:
                advance = stack.enter_context(_progress(f, f"export {what}"))
                sink: BinaryIO = (
                    sys.stdout.buffer if to_stdout else stack.enter_context(target.open("wb"))
                )
                encoder = stream.Encoder(format, source.schema)
                for chunk in chunks:
                    written[0] += sink.write(encoder.write(chunk.rows))
                    rows += len(chunk.rows)
                    advance(chunk)
                written[0] += sink.write(encoder.close())
                sink.flush()
            return rows

        try:
            rows = source.run(consume, "k2 export")
        except BaseException:
            if not direct:
                target.unlink(missing_ok=True)
            raise
        if not direct:
            target.replace(out)
        where = "standard output" if to_stdout else str(out)
        print(f"k2 export: {rows:,} {what} to {where} ({written[0]:,} bytes)", file=sys.stderr)


def replay(
    start: str = REQUIRED_FROM,
    end: str = END,
    venue: str = VENUE,
    symbol: str = SYMBOL,
    speed: str = typer.Option(
        "max", "--speed", help="Times real time (10: ten times as fast), or max: no waiting."
    ),
    format: stream.Format = typer.Option(
        stream.Format.jsonl, "--format", help="jsonl or csv (to stdout)."
    ),
    data_dir: Path = DATA_DIR,
) -> None:
    """Replay stored trades to stdout, all venues merged in exchange-time order, paced at real
    time times --speed; the same rows and text as `k2 trades --format jsonl`."""
    with reported():
        cfg = settings()
        factor = replay_speed(speed)
        if format not in (stream.Format.jsonl, stream.Format.csv):
            raise InputError("--format for replay: jsonl or csv")
        f = _filter(cfg, venue, symbol, start, end)
        out = sys.stdout.buffer

        def consume(chunks: Iterator[stream.Chunk]) -> int:
            return play(chunks, out, format, factor)

        with contextlib.suppress(BrokenPipeError):  # `k2 replay | head` is fine
            _Chunks(cfg, data_dir, None, f).run(consume, "k2 replay")


def play(
    chunks: Iterator[stream.Chunk],
    out: BinaryIO,
    fmt: stream.Format,
    factor: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Write the trades to `out`, each run when it is due (query/replay.py). Returns how many."""
    encoder = stream.Encoder(fmt, TRADE_SCHEMA)
    began = clock()
    count = 0
    for due, rows in runs(chunks, factor):
        wait = began + due - clock()
        if wait > 0:
            out.flush()
            sleep(wait)
        out.write(encoder.write(rows))
        count += len(rows)
    out.write(encoder.close())
    out.flush()
    return count
