"""`k2 trades` and `k2 candles`: read the hot store, through the running `k2 up` when there is one."""

from __future__ import annotations

import csv
import re
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from k2.cli.common import reported, settings
from k2.errors import ConfigError, StoreLocked
from k2.hotstore import queries
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.owner import HOT_DIR
from k2.hotstore.store import DataDirLock
from k2.timeutil import ns_to_rfc3339, rfc3339_to_ns

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Format(str, Enum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


def parse_time(value: str | None) -> str | None:
    """Accept RFC 3339, a date (YYYY-MM-DD, midnight UTC) or a duration ago (90s, 15m, 2h, 1d)."""
    if value is None:
        return None
    match = _AGO.match(value)
    if match:
        ago = float(match.group(1)) * _UNIT[match.group(2)]
        return ns_to_rfc3339(time.time_ns() - int(ago * 1e9))
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        value += "T00:00:00Z"
    rfc3339_to_ns(value)  # raises a clear error for anything else
    return value


def fetch(kind: str, data_dir: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Query the running `k2 up` over its API, or open the data directory when nothing runs."""
    lock = DataDirLock(data_dir)
    for _ in range(2):
        if lock.is_held():
            url = (lock.holder() or {}).get("api_url")
            if not url:
                raise ConfigError(f"{data_dir} is held by a k2 process without an API (starting up?); try again")
            query = {k: v for k, v in params.items() if v is not None}
            query = {("from" if k == "start" else "to" if k == "end" else k): v for k, v in query.items()}
            try:
                resp = httpx.get(f"{url}/api/{kind}", params=query, timeout=30)
            except httpx.HTTPError as err:
                raise ConfigError(f"cannot reach the running k2 up at {url}: {err}") from None
            if resp.status_code != 200:
                raise ConfigError(resp.json().get("detail", resp.text))
            return resp.json()["rows"]
        if not (data_dir / HOT_DIR).is_dir():
            raise ConfigError(f"no hot store in {data_dir} (run `k2 up` first, or pass --data-dir)")
        try:
            lock.acquire(f"k2 {kind}")
        except StoreLocked:
            continue  # k2 up started in between: ask it instead
        try:
            store = ClickHouseStore.at(data_dir / HOT_DIR)
            try:
                start = rfc3339_to_ns(params["start"]) if params.get("start") else None
                end = rfc3339_to_ns(params["end"]) if params.get("end") else None
                if kind == "trades":
                    return queries.trades(store, params["venue"], params["symbol"], start, end, params["limit"])
                if kind == "gaps":
                    return queries.gaps(store, params["venue"], params["outcome"], start, end, params["limit"])
                if kind == "rejects":
                    return queries.rejects(store, params["venue"], start, end, params["limit"])
                return queries.candles(store, params["timeframe"], params["venue"], params["symbol"], start, end,
                                       params["limit"])  # fmt: skip
            finally:
                store.close()
        finally:
            lock.release()
    raise ConfigError(f"{data_dir} is busy; try again")


def emit(rows: list[dict[str, Any]], keys: tuple[str, ...], fmt: Format, title: str) -> None:
    if fmt is Format.jsonl:
        sys.stdout.buffer.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    elif fmt is Format.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table(title=f"{title} ({len(rows)})")
        for key in keys:
            table.add_column(key, justify="right" if key not in ("exchange", "symbol", "canonical_symbol") else "left")
        for row in rows:  # as text, never as markup: venue text may hold "[/]" or "[bold]"
            table.add_row(*(Text(str(row[k])) for k in keys))
        Console(width=None if sys.stdout.isatty() else 250).print(table)  # piped: never squeeze columns


VENUE = typer.Option(None, "--venue", help="Only this venue (binance, kraken, coinbase).")
SYMBOL = typer.Option(None, "--symbol", help="Only this canonical symbol, e.g. BTC/USDT.")
START = typer.Option(None, "--from", help="From this time: RFC 3339, a date, or a duration ago (15m, 2h).")
END = typer.Option(None, "--to", help="Up to (not including) this time; same forms as --from.")
LIMIT = typer.Option(100, "--limit", help="At most this many rows (the latest ones).")
FORMAT = typer.Option(Format.table, "--format", help="table, csv, or jsonl.")
DATA_DIR = typer.Option(None, "--data-dir", help="Data directory (setting data_dir, default ./data).")


def trades(venue: str = VENUE, symbol: str = SYMBOL, start: str = START, end: str = END, limit: int = LIMIT,
           format: Format = FORMAT, data_dir: Path = DATA_DIR) -> None:  # noqa: A002  # fmt: skip
    """Show stored trades (silver), oldest first, with the same keys as `k2 normalize`."""
    with reported():
        directory = data_dir or settings().data_dir
        params = {"venue": venue, "symbol": symbol, "start": parse_time(start), "end": parse_time(end), "limit": limit}
        emit(fetch("trades", directory, params), queries.TRADE_KEYS, format, "trades")


def candles(timeframe: str = typer.Option("1m", "--timeframe", help="1m, 5m, 15m, 30m, 1h or 1d."),
            venue: str = VENUE, symbol: str = SYMBOL, start: str = START, end: str = END, limit: int = LIMIT,
            format: Format = FORMAT, data_dir: Path = DATA_DIR) -> None:  # noqa: A002  # fmt: skip
    """Show OHLCV candles (with VWAP), oldest first; the current window is included as it stands."""
    with reported():
        queries.timeframe(timeframe)
        directory = data_dir or settings().data_dir
        params = {"timeframe": timeframe, "venue": venue, "symbol": symbol, "start": parse_time(start),
                  "end": parse_time(end), "limit": limit}  # fmt: skip
        emit(fetch("candles", directory, params), queries.CANDLE_KEYS, format, f"{timeframe} candles")



def gaps(venue: str = VENUE,
         outcome: str = typer.Option(None, "--outcome", help="Only: pending, repaired, partial, unrecoverable or suspicious."),
         start: str = START, end: str = END, limit: int = LIMIT, format: Format = FORMAT,
         data_dir: Path = DATA_DIR) -> None:  # noqa: A002  # fmt: skip
    """Show detected trade gaps and how each was repaired (newest last; by detection time)."""
    with reported():
        directory = data_dir or settings().data_dir
        params = {"venue": venue, "outcome": outcome, "start": parse_time(start), "end": parse_time(end),
                  "limit": limit}  # fmt: skip
        emit(fetch("gaps", directory, params), queries.GAP_KEYS, format, "gaps")


def rejects(venue: str = VENUE, start: str = START, end: str = END, limit: int = LIMIT, format: Format = FORMAT,
            data_dir: Path = DATA_DIR) -> None:  # noqa: A002  # fmt: skip
    """Show quarantined messages (malformed or unexpected) with the reason each was rejected."""
    with reported():
        directory = data_dir or settings().data_dir
        params = {"venue": venue, "start": parse_time(start), "end": parse_time(end), "limit": limit}
        emit(fetch("rejects", directory, params), queries.REJECT_KEYS, format, "rejects")


__all__ = ["candles", "gaps", "rejects", "trades"]
