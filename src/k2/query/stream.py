"""Reads of any size, in bounded memory: a time range cut into windows, each read across both
tiers (query/tiers.py) and encoded as it comes.

A window is sized so that it holds about `target_rows` rows: the next window's length follows
the last one's count. Memory is then one window's rows plus the encoder's buffer, whatever the
range. Windows follow each other in time, and rows within one are in time order, so the stream
is in time order as a whole.
"""

from __future__ import annotations

import csv
import enum
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from k2.hotstore.schema import TIMEFRAME_BY_NAME
from k2.hotstore.store import HotStore
from k2.query import candle_tiers, text_lines, tiers
from k2.query.frames import CANDLE_SCHEMA, TRADE_SCHEMA, as_text

SECOND_NS = 1_000_000_000
MIN_WINDOW_NS = SECOND_NS
MAX_WINDOW_NS = 86_400 * SECOND_NS
TARGET_ROWS = 200_000


class Format(enum.StrEnum):
    """What a stream is encoded as."""

    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"
    arrow = "arrow"  # the Arrow IPC stream format


MEDIA_TYPES = {
    Format.jsonl: "application/x-ndjson",
    Format.csv: "text/csv; charset=utf-8",
    Format.parquet: "application/vnd.apache.parquet",
    Format.arrow: "application/vnd.apache.arrow.stream",
}


@dataclass(frozen=True)
class Chunk:
    """One window's rows, and where the window ends (for progress)."""

    rows: pa.Table
    end_ns: int


def chunks(
    read: Callable[[tiers.Filter], pa.Table],
    f: tiers.Filter,
    start_ns: int,
    end_ns: int,
    target_rows: int = TARGET_ROWS,
    first_window_ns: int = 3_600 * SECOND_NS,
    count: Callable[[tiers.Filter], int] | None = None,
    seek: Callable[[tiers.Filter], int | None] | None = None,
) -> Iterator[Chunk]:
    """Read [start_ns, end_ns) window by window with `read`, each about `target_rows` rows.

    `count`, if given, says cheaply how many rows a window holds (the hot store's share): a
    window holding over twice the target is narrowed before it is read, so a burst after a quiet
    stretch is not read in one piece. `seek`, if given, says where the next rows may be after an
    empty window (None: nowhere before the end), so an empty stretch costs one query, not one per
    window.
    """
    at, window = start_ns, first_window_ns
    while at < end_ns:
        until = min(end_ns, at + window)
        if count is not None:
            while (
                until - at > MIN_WINDOW_NS and (n := count(f.between(at, until))) > 2 * target_rows
            ):
                until = at + max(MIN_WINDOW_NS, (until - at) * target_rows // n)
        rows = read(f.between(at, until))
        yield Chunk(rows, until)
        span = until - at  # the next window: about target_rows at this one's rate; wider if empty
        window = int(span * target_rows / len(rows)) if len(rows) else span * 4
        window = max(MIN_WINDOW_NS, min(MAX_WINDOW_NS, window))
        at = until
        if not len(rows) and seek is not None and at < end_ns:
            found = seek(f.between(at, end_ns))
            if found is None:
                yield Chunk(rows, end_ns)
                return
            at = max(at, found)


def trade_chunks(
    store: HotStore,
    lake: tiers.Archive | None,
    f: tiers.Filter,
    start_ns: int,
    end_ns: int | None = None,
    target_rows: int = TARGET_ROWS,
) -> Iterator[Chunk]:
    """Every trade matching `f` in [start_ns, end_ns or now), window by window (the next one read
    while the caller handles the current one)."""
    end = time.time_ns() if end_ns is None else end_ns
    return prefetched(
        chunks(
            lambda w: tiers.trades_between(store, lake, w),
            f,
            start_ns,
            end,
            target_rows,
            count=lambda w: tiers.hot_count(store, w),
            seek=lambda w: tiers.first_trade(store, lake, w),
        )
    )


def candle_chunks(
    store: HotStore,
    lake: tiers.Archive | None,
    tf: str,
    f: tiers.Filter,
    start_ns: int,
    end_ns: int | None = None,
    target_rows: int = TARGET_ROWS,
) -> Iterator[Chunk]:
    """Every candle of `tf` matching `f` with its window in [start_ns, end_ns or now)."""
    end = time.time_ns() if end_ns is None else end_ns
    return chunks(
        lambda w: candle_tiers.candles_between(store, lake, tf, w),
        f,
        start_ns,
        end,
        target_rows,
        first_window_ns=max(3_600, 1_000 * TIMEFRAME_BY_NAME[tf].seconds) * SECOND_NS,
        seek=lambda w: candle_tiers.first_candle(store, lake, tf, w),
    )


def prefetched(chunks: Iterator[Chunk], depth: int = 1) -> Iterator[Chunk]:
    """`chunks`, with the next `depth` read on a thread of their own while the caller handles the
    current one (reading and encoding overlap; memory grows by `depth` windows)."""
    import queue
    import threading

    ahead: queue.Queue[tuple[Chunk | None, BaseException | None]] = queue.Queue(depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        ahead.put((chunk, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ahead.put((None, None))
        except BaseException as err:  # noqa: BLE001 (handed to the caller, raised there)
            ahead.put((None, err))

    thread = threading.Thread(target=read, name="k2-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            chunk, err = ahead.get()
            if err is not None:
                raise err
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()


class Encoder:
    """Turns a stream of tables into bytes of one format: `write` each table (what it returns is
    ready to send), then `close` for what ends the stream."""

    def __init__(self, fmt: Format, schema: pa.Schema) -> None:
        self.format, self.schema = fmt, schema
        self._buffer = io.BytesIO()
        self._writer: pq.ParquetWriter | pa.ipc.RecordBatchStreamWriter | None = None
        self._header = True
        if fmt is Format.parquet:
            self._writer = pq.ParquetWriter(self._buffer, schema, compression="zstd")
        elif fmt is Format.arrow:
            self._writer = pa.ipc.new_stream(self._buffer, schema)

    def _take(self) -> bytes:
        out = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return out

    def write(self, table: pa.Table) -> bytes:
        if not len(table):
            return b""
        if self.format is Format.jsonl:
            fast = text_lines.jsonl(table)
            if fast is not None:
                return fast
            return b"".join(orjson.dumps(row) + b"\n" for row in as_text(table).to_pylist())
        if self.format is Format.csv:  # as `k2 trades --format csv` writes it: quoted where needed
            header, self._header = self._header, False
            fast = text_lines.csv(table, header)
            if fast is not None:
                return fast
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            if header:
                writer.writerow(self.schema.names)
            writer.writerows(zip(*(c.to_pylist() for c in as_text(table).columns), strict=True))
            return out.getvalue().encode()
        assert self._writer is not None
        self._writer.write_table(table)
        return self._take()

    def close(self) -> bytes:
        """What ends the stream (a CSV header alone if there were no rows)."""
        if self.format is Format.csv and self._header:
            self._header = False
            return (",".join(self.schema.names) + "\n").encode()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self._take()


def encode(chunks: Iterator[Chunk], fmt: Format, schema: pa.Schema) -> Iterator[bytes]:
    """`chunks` encoded as `fmt`, a piece per chunk (never empty)."""
    encoder = Encoder(fmt, schema)
    for chunk in chunks:
        if piece := encoder.write(chunk.rows):
            yield piece
    if piece := encoder.close():
        yield piece


def write_to(out: BinaryIO, pieces: Iterator[bytes]) -> int:
    """Write every piece to `out`; return the bytes written."""
    total = 0
    for piece in pieces:
        out.write(piece)
        total += len(piece)
    return total


SCHEMAS = {"trades": TRADE_SCHEMA, "candles": CANDLE_SCHEMA}
