"""`k2 trades` and `k2 candles`: read the hot store,
through the running `k2 up` when there is one."""

from __future__ import annotations

import csv
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from k2.cli.common import reported, settings
from k2.cli.remote import call, reach
from k2.hotstore import queries
from k2.hotstore.owner import OwnedStore
from k2.hotstore.store import HotStore
from k2.instruments import Instruments, load_instruments, resolve_filters
from k2.query import candle_tiers, coverage, frames, tiers
from k2.query.frames import CANDLE_SCHEMA
from k2.records import TRADE_KEYS
from k2.settings import Settings
from k2.timeutil import ns_to_rfc3339, rfc3339_to_ns, user_time

if TYPE_CHECKING:
    from pyiceberg.table import Table as IcebergTable

    from k2.archive.lake import Lake
    from k2.archive.tables import ArchiveTable


class Format(StrEnum):
    table = "table"
    csv = "csv"
    jsonl = "jsonl"


def parse_time(value: str | None, what: str) -> str | None:
    """A user's --from/--to as RFC 3339 (see `user_time` for the forms; out of range is refused)."""
    return None if value is None else ns_to_rfc3339(user_time(value, what))


class LazyLake:
    """The archive of a stopped data directory, opened only if a read needs it."""

    def __init__(self, cfg: Settings, data_dir: Path) -> None:
        self._settings, self._data_dir = cfg.archive, data_dir
        self._lake: Lake | None = None

    def table(self, spec: ArchiveTable) -> IcebergTable:
        if self._lake is None:
            from k2.archive.lake import Lake

            self._lake = Lake(self._settings, self._data_dir)
        return self._lake.table(spec)

    def close(self) -> None:
        if self._lake is not None:
            self._lake.close()


def _local(
    kind: str,
    store: HotStore,
    lake: tiers.Archive,
    params: dict[str, Any],
    instruments: Instruments,
) -> list[dict[str, Any]]:
    start = rfc3339_to_ns(params["start"]) if params.get("start") else None
    end = rfc3339_to_ns(params["end"]) if params.get("end") else None
    f = tiers.Filter(params.get("venue"), params.get("symbol"), start, end)
    if kind == "trades":
        return frames.rows(tiers.trades(store, lake, f, params["limit"]))
    if kind == "candles":
        return frames.rows(
            candle_tiers.candles(store, lake, params["timeframe"], f, params["limit"])
        )
    if kind == "gaps":
        return queries.gaps(store, params["venue"], params["outcome"], start, end, params["limit"])
    if kind == "rejects":
        return queries.rejects(store, params["venue"], start, end, params["limit"])
    if kind == "symbols":
        return coverage.symbols(store, lake, instruments)
    if kind == "symbols/days":
        return coverage.days(store, lake, instruments, f)
    raise AssertionError(kind)


def fetch(
    kind: str,
    cfg: Settings,
    params: dict[str, Any],
    data_dir: Path | None = None,
    instruments: Instruments | None = None,
) -> list[dict[str, Any]]:
    """Query the running `k2 up` over its API, or the stopped data directory itself
    (`instruments`: the file already loaded, if the caller has it)."""

    def remote(url: str) -> list[dict[str, Any]]:
        names = {"start": "from", "end": "to"}
        query = {names.get(k, k): v for k, v in params.items() if v is not None}
        return list(call(url, cfg.api, "GET", f"/api/v1/{kind}", params=query).json()["rows"])

    def local(owner: OwnedStore) -> list[dict[str, Any]]:
        known = instruments or load_instruments(cfg.instruments_file)
        lake = LazyLake(cfg, data_dir or cfg.data_dir)
        try:
            return _local(kind, owner.store, lake, params, known)
        finally:
            lake.close()

    return reach(data_dir or cfg.data_dir, f"k2 {kind}", cfg.hotstore, remote, local)


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
            table.add_column(
                key,
                justify="right"
                if key not in ("exchange", "symbol", "canonical_symbol")
                else "left",
            )
        for row in rows:  # as text, never as markup: venue text may hold "[/]" or "[bold]"
            table.add_row(*(Text(str(row[k])) for k in keys))
        # piped: never squeeze columns
        Console(width=None if sys.stdout.isatty() else 250).print(table)


VENUE = typer.Option(None, "--venue", help="Only this venue (binance, kraken, coinbase).")
SYMBOL = typer.Option(
    None, "--symbol", help="Only this symbol: canonical (BTC/USDT) or as the venue spells it."
)
START = typer.Option(
    None, "--from", help="From this time: RFC 3339, a date, or a duration ago (15m, 2h)."
)
END = typer.Option(None, "--to", help="Up to (not including) this time; same forms as --from.")
LIMIT = typer.Option(
    100, "--limit", help="At most this many rows (the latest ones; k2 export has no limit)."
)
FORMAT = typer.Option(Format.table, "--format", help="table, csv, or jsonl.")
DATA_DIR = typer.Option(
    None, "--data-dir", help="Data directory (setting data_dir, default ./data)."
)


def trades(
    venue: str = VENUE,
    symbol: str = SYMBOL,
    start: str = START,
    end: str = END,
    limit: int = LIMIT,
    format: Format = FORMAT,
    data_dir: Path = DATA_DIR,
) -> None:
    """Show stored trades (silver), oldest first, with the same keys as `k2 normalize`."""
    with reported():
        rows = _rows("trades", data_dir, venue, symbol, start, end, limit=limit)
        emit(rows, TRADE_KEYS, format, "trades")


def candles(
    timeframe: str = typer.Option("1m", "--timeframe", help="1m, 5m, 15m, 30m, 1h or 1d."),
    venue: str = VENUE,
    symbol: str = SYMBOL,
    start: str = START,
    end: str = END,
    limit: int = LIMIT,
    format: Format = FORMAT,
    data_dir: Path = DATA_DIR,
) -> None:
    """Show OHLCV candles (with VWAP), oldest first; the current window is included as it stands."""
    with reported():
        queries.timeframe(timeframe)
        rows = _rows(
            "candles", data_dir, venue, symbol, start, end, timeframe=timeframe, limit=limit
        )
        emit(rows, tuple(CANDLE_SCHEMA.names), format, f"{timeframe} candles")


def gaps(
    venue: str = VENUE,
    outcome: str = typer.Option(
        None, "--outcome", help="Only: pending, repaired, partial, unrecoverable or suspicious."
    ),
    start: str = START,
    end: str = END,
    limit: int = LIMIT,
    format: Format = FORMAT,
    data_dir: Path = DATA_DIR,
) -> None:
    """Show detected trade gaps and how each was repaired (newest last; by detection time)."""
    with reported():
        queries.gap_outcome(outcome)
        rows = _rows("gaps", data_dir, venue, None, start, end, outcome=outcome, limit=limit)
        emit(rows, queries.GAP_KEYS, format, "gaps")


def rejects(
    venue: str = VENUE,
    start: str = START,
    end: str = END,
    limit: int = LIMIT,
    format: Format = FORMAT,
    data_dir: Path = DATA_DIR,
) -> None:
    """Show quarantined messages (malformed or unexpected) with the reason each was rejected."""
    with reported():
        rows = _rows("rejects", data_dir, venue, None, start, end, limit=limit)
        emit(rows, queries.REJECT_KEYS, format, "rejects")


def symbols(
    days: bool = typer.Option(
        False, "--days", help="Per market and day: the tiers holding it, and whether complete."
    ),
    venue: str = VENUE,
    symbol: str = SYMBOL,
    start: str = typer.Option(
        "7d", "--from", help="With --days: from this time (default 7 days ago); as for trades."
    ),
    end: str = END,
    format: Format = FORMAT,
    data_dir: Path = DATA_DIR,
) -> None:
    """List every instrument: venue, venue symbol, canonical symbol, trades stored (hot store and
    archive), first and last trade; with --days, each market's days and their completeness."""
    with reported():
        if days:
            rows = _rows("symbols/days", data_dir, venue, symbol, start, end)
            emit(rows, coverage.DAY_KEYS, format, "days")
        else:
            emit(_rows("symbols", data_dir), coverage.SYMBOL_KEYS, format, "instruments")


def _rows(
    kind: str,
    data_dir: Path | None,
    venue: str | None = None,
    symbol: str | None = None,
    start: str | None = None,
    end: str | None = None,
    **extra: Any,
) -> list[dict[str, Any]]:
    """Fetch `kind` with the common filters checked first: a known venue and symbol (from the
    instruments file, read once), times K2 can store."""
    cfg = settings()
    instruments = load_instruments(cfg.instruments_file)
    venue, symbol = resolve_filters(instruments, venue, symbol)
    params = {
        "venue": venue,
        "symbol": symbol,
        "start": parse_time(start, "--from"),
        "end": parse_time(end, "--to"),
        **extra,
    }
    return fetch(kind, cfg, params, data_dir, instruments)


__all__ = ["candles", "gaps", "rejects", "symbols", "trades"]
