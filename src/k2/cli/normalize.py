"""`k2 normalize`: raw venue messages in, normalized trades out (JSON lines)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson
import typer

from k2.cli.common import fail, reported
from k2.errors import ParseError
from k2.exchanges import VENUE_NAMES, make_adapter
from k2.exchanges.base import as_parsed
from k2.records import trade_json


def normalize(
    venue: str = typer.Argument(
        ..., help="Venue the messages come from: " + ", ".join(VENUE_NAMES)
    ),
    file: Path = typer.Argument(
        None, help="File of raw WebSocket messages, one per line (default: stdin)."
    ),
) -> None:
    """Turn raw venue WebSocket messages into normalized trades, one JSON object per line.

    Non-trade messages (acks, heartbeats) produce nothing. Bad lines are reported on stderr with
    their line number; the exit code is 1 only if every line failed.
    """
    with reported():
        adapter = make_adapter(venue)
    stream = sys.stdin.buffer if file is None else None
    if file is not None:
        try:
            stream = file.open("rb")
        except OSError as err:
            fail(f"cannot read {file}: {err.strerror}")
    assert stream is not None
    out = sys.stdout.buffer
    lines = failed = 0
    for number, raw_line in enumerate(stream, 1):
        line = raw_line.rstrip(b"\r\n")
        if not line.strip():
            continue
        lines += 1
        try:
            parsed = as_parsed(adapter.parse(line, time.time_ns()))
        except ParseError as err:
            failed += 1
            print(f"line {number}: {err.reason}", file=sys.stderr)
            continue
        for rejected in parsed.rejected:
            print(f"line {number}: {rejected.reason}", file=sys.stderr)
        for trade in parsed.trades:
            out.write(orjson.dumps(trade_json(trade)) + b"\n")
    out.flush()
    if lines and failed == lines:
        raise typer.Exit(1)
