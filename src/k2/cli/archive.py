"""`k2 offload`, `k2 maintain`, `k2 reconcile`: run an archive flow now and print what it did.

With `k2 up` running on the data directory, the flow runs inside it (chDB allows one process
per data directory) and its progress streams back as NDJSON; otherwise these commands open the
data directory themselves. Each table is printed as it finishes, one line each (with a progress
bar above them on a terminal), then a summary table; `--json` prints only the result.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from k2.api import NDJSON
from k2.cli.common import prefect_env, reported, settings, setup_logging
from k2.cli.remote import client, raise_for, reach
from k2.errors import ConfigError, InputError, K2Error
from k2.hotstore.owner import OwnedStore
from k2.settings import Settings
from k2.timeutil import ns_to_rfc3339

if TYPE_CHECKING:  # the flows load Prefect, the tables PyIceberg: only when a command runs
    from k2.flows.progress import OnTable, TableEvent

TABLE = typer.Option(
    None,
    "--table",
    "-t",
    metavar="TABLE",
    help="Only this table (repeatable; default: every table: a bronze one per venue, silver and "
    "the six candle tables).",
)
DATA_DIR = typer.Option(
    None, "--data-dir", help="Data directory (setting data_dir, default ./data)."
)
JSON = typer.Option(False, "--json", help="Print only the result, as JSON.")


def run_flow(
    name: str, tables: list[str] | None, data_dir: Path | None, on_table: OnTable | None = None
) -> dict[str, Any]:
    """Run flow `name` through the running `k2 up`, or in this process on a stopped data
    directory; `on_table` hears each table start and end, in this thread."""
    from k2.archive.tables import table_names

    table_names(tables)  # a bad name fails here, before anything starts
    cfg = settings(**({"data_dir": data_dir} if data_dir else {}))

    def local(owner: OwnedStore) -> dict[str, Any]:
        setup_logging(cfg.log_level)
        prefect_env(cfg.data_dir)
        from k2.flows import API, FLOWS, prefect_api_ready
        from k2.flows.runtime import runtime_on

        # The first flow here starts Prefect's temporary API server: tens of seconds on a busy
        # machine. Say so while it starts (on stderr: --json keeps stdout to the result).
        with runtime_on(owner.store, cfg):  # (the archive opens first: its mistakes say so first)
            err = Console(stderr=True)
            with err.status("starting Prefect's API server (for the flow run)"):
                prefect_api_ready()
            if API.ready_at and API.waited() >= 1:
                err.print(f"Prefect's API answered after {API.waited():.1f} s", highlight=False)
            return dict(FLOWS[name](tables, on_table=on_table))

    return reach(
        cfg.data_dir,
        f"k2 {name}",
        cfg.hotstore,
        lambda url: _through_api(url, cfg, name, tables, on_table),
        local,
    )


def _through_api(
    url: str, cfg: Settings, name: str, tables: list[str] | None, on_table: OnTable | None
) -> dict[str, Any]:
    """Run the flow inside `k2 up`, reading its NDJSON stream: table events, then the result."""
    from k2.flows.progress import TableEvent

    body = {"tables": tables} if tables else {}
    headers = {"Accept": NDJSON}
    try:
        with (
            client(url, cfg.api, timeout=None) as http,
            http.stream("POST", f"/api/v1/flows/{name}", json=body, headers=headers) as resp,
        ):
            if resp.status_code != 200:
                resp.read()
                raise_for(resp, url)
            if not resp.headers.get("content-type", "").startswith(NDJSON):
                resp.read()  # a k2 up that answers in one piece
                return dict(resp.json())
            for line in resp.iter_lines():
                item = _event(line, url)
                if item.get("event") == "table" and on_table is not None:
                    on_table(TableEvent.from_json(item))
                elif item.get("event") == "result":
                    return dict(item["result"])
                elif item.get("event") == "error":
                    error = InputError if 400 <= item.get("status", 500) < 500 else K2Error
                    raise error(str(item.get("detail")))
    except httpx.HTTPError as err:
        raise ConfigError(f"cannot reach the running k2 up at {url}: {err}") from None
    raise K2Error(f"the running k2 up at {url} ended its answer without a result")


def _event(line: str, url: str) -> dict[str, Any]:
    if not line.strip():
        return {}
    try:
        item = json.loads(line)
    except ValueError:
        raise K2Error(
            f"the running k2 up at {url} sent an unreadable line: {line[:200]!r}"
        ) from None
    return item if isinstance(item, dict) else {}


# -- what is printed ---------------------------------------------------------------------------


def watermark(table: str, mark: int | None) -> str:
    """A table's watermark as RFC 3339 ("-" if none): an ingest sequence (a µs clock) for the
    trade tables, the end of the last closed window (epoch seconds) for the candles."""
    from k2.archive.tables import BY_NAME

    if not mark:
        return "-"
    return ns_to_rfc3339(mark * 1_000_000_000 if BY_NAME[table].is_candles else mark * 1_000)


def _n(count: int, what: str) -> str:
    return f"{count:,} {what}{'' if count == 1 else 's'}"


def line(event: TableEvent, width: int = 0) -> str:
    """One finished table, on one line (table names padded to `width`)."""
    head = f"{event.flow}  {event.table:<{width}}"
    if event.state == "failed":
        return f"{head}  FAILED after {event.seconds:.2f} s: {event.error}"
    r = event.result or {}
    if event.flow == "offload":
        mark = r.get("watermark_after") or r.get("watermark_before")
        body = f"{_n(r['rows'], 'row')}  {_n(r['commits'], 'commit')}  "
        body += f"watermark {watermark(event.table, mark)}"
    elif event.flow == "maintenance":
        body = (
            f"files {r['files_before']:,} -> {r['files_after']:,}  "
            f"{_n(r['partitions_compacted'], 'partition')} compacted  "
            f"{_n(r['snapshots_expired'], 'snapshot')} expired  "
            f"{_n(r['orphans_removed'], 'orphan file')} removed"
        )
    else:
        differ = len(r.get("differences", []))
        body = f"{_n(r['days'], 'day')} compared  "
        body += f"{_n(differ, 'day')} differ{'s' * (differ == 1)}" if differ else "no differences"
    return f"{head}  {body}  {event.seconds:.2f} s"


class Printer:
    """Prints each table as it finishes; on a terminal, under a progress bar (tables done/total)."""

    def __init__(self, flow: str, tables: list[str], quiet: bool) -> None:
        self.console = Console()
        self.quiet = quiet
        self.width = max(len(t) for t in tables)
        self.bar: Progress | None = None
        if not quiet and self.console.is_terminal:
            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
                # Log lines go above the bar, on the terminal: never into stdout when redirected.
                redirect_stderr=sys.stderr.isatty(),
            )
            self.task = self.bar.add_task(f"{flow}: starting", total=len(tables))

    def __enter__(self) -> Self:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, event: TableEvent) -> None:
        if self.quiet:
            return
        if self.bar is None:
            if event.state != "started":
                typer.echo(line(event, self.width))
            return
        if event.state == "started":
            self.bar.update(self.task, description=f"{event.flow} {event.table}", total=event.total)
            return
        self.bar.console.print(
            line(event, self.width), markup=False, highlight=False, soft_wrap=True
        )
        self.bar.advance(self.task)


def _show(console: Console, title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """The summary: every cell whole (folded, never cut), within 80 columns for the usual sizes."""
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for c in columns:  # the other columns give way first (their headers wrap): names stay whole
        table.add_column(
            c, justify="left" if c == "table" else "right", overflow="fold", no_wrap=c == "table"
        )
    for row in rows:
        table.add_row(*(Text(str(v)) for v in row))
    console.print(table)


def _run(
    flow: str, tables: list[str] | None, data_dir: Path | None, json_out: bool, busy: str
) -> tuple[dict[str, Any], Console | None]:
    """Run `flow`, printing its tables as they finish (or, with `--json`, only the result).
    Return the result, and the console to show it on as a table (None: already shown)."""
    from k2.archive.tables import table_names

    with reported():
        names = table_names(tables)
        started = time.monotonic()
        with Printer(flow, names, quiet=json_out) as printer:
            result = run_flow(flow, tables, data_dir, on_table=printer)
    if json_out:
        typer.echo(json.dumps(result))
        return result, None
    if result.get("skipped"):
        typer.echo(f"{busy}; this one skipped")
        return result, None
    took = f"{flow}: {_n(len(result), 'table')} in {time.monotonic() - started:.2f} s"
    printer.console.print(took, markup=False, highlight=False)
    return result, printer.console


def offload(table: list[str] = TABLE, data_dir: Path = DATA_DIR, json_out: bool = JSON) -> None:
    """Archive the hot tables to Iceberg now (exactly once: rerun any time)."""
    result, console = _run("offload", table, data_dir, json_out, "another offload is running")
    if console is not None:
        rows = [
            [
                n,
                f"{r['rows']:,}",
                r["commits"],
                watermark(n, r["watermark_after"] or r["watermark_before"]),
            ]
            for n, r in result.items()
        ]
        _show(console, "offload", ["table", "rows", "commits", "watermark"], rows)


def maintain(table: list[str] = TABLE, data_dir: Path = DATA_DIR, json_out: bool = JSON) -> None:
    """Compact small files, expire old snapshots, remove orphan files, audit, and drop the hot
    days past retention that the archive holds in full, now."""
    busy = "another maintenance run is in progress"
    result, console = _run("maintenance", table, data_dir, json_out, busy)
    if console is not None:
        rows = [
            [
                n,
                f"{r['files_before']:,} -> {r['files_after']:,}",
                r["partitions_compacted"],
                r["snapshots_expired"],
                r["orphans_removed"],
                r.get("hot_days_dropped", ""),
            ]
            for n, r in result.items()
        ]
        columns = [
            "table",
            "files",
            "compacted",
            "snapshots expired",
            "orphans removed",
            "hot days dropped",
        ]
        _show(console, "maintenance", columns, rows)


def reconcile(table: list[str] = TABLE, data_dir: Path = DATA_DIR, json_out: bool = JSON) -> None:
    """Compare hot and archive per table and day; exit 1 if any day differs."""
    busy = "another reconcile run is in progress"
    result, console = _run("reconcile", table, data_dir, json_out, busy)
    if console is not None:
        rows: list[list[Any]] = []
        for name, r in result.items():
            rows.append([name, r["days"], len(r["differences"]) or "none"])
            for d in r["differences"]:
                same = d["hot_checksum"] == d["archive_checksum"]
                checksum = "" if same else " (checksum differs)"
                rows.append(
                    [
                        f"  {d['day']}",
                        "",
                        f"hot {d['hot_rows']:,}, archive {d['archive_rows']:,}{checksum}",
                    ]
                )
        _show(console, "reconcile", ["table", "days", "differences"], rows)
    if not result.get("skipped") and any(r["differences"] for r in result.values()):
        raise typer.Exit(1)


__all__ = ["maintain", "offload", "reconcile", "run_flow"]
