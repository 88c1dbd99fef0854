"""`k2 offload`, `k2 maintain`, `k2 reconcile`: run an archive flow now and print what it did.

With `k2 up` running on the data directory, the flow runs inside it (chDB allows one process
per data directory); otherwise these commands open the data directory themselves.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from k2.cli.common import prefect_env, reported, settings, setup_logging
from k2.errors import ConfigError, K2Error
from k2.hotstore.store import DataDirLock

TABLE = typer.Option(None, "--table", "-t", help="Only this table (repeatable; default: all ten).")
DATA_DIR = typer.Option(None, "--data-dir", help="Data directory (setting data_dir, default ./data).")
JSON = typer.Option(False, "--json", help="Print the result as JSON.")


def run_flow(name: str, tables: list[str] | None, data_dir: Path | None) -> dict[str, Any]:
    """Run flow `name` through the running `k2 up`, or in this process on a stopped data directory."""
    from k2.archive.tables import table_names

    table_names(tables)  # a bad name fails here, before anything starts
    cfg = settings(**({"data_dir": data_dir} if data_dir else {}))
    lock = DataDirLock(cfg.data_dir)
    if lock.is_held():
        url = (lock.holder() or {}).get("api_url")
        if not url:
            raise ConfigError(f"{cfg.data_dir} is held by a k2 process without an API; try again")
        try:
            resp = httpx.post(f"{url}/api/flows/{name}", json={"tables": tables} if tables else {}, timeout=None)
        except httpx.HTTPError as err:
            raise ConfigError(f"cannot reach the running k2 up at {url}: {err}") from None
        body = resp.json()
        if resp.status_code != 200:
            raise K2Error(body.get("detail", resp.text))
        return body
    setup_logging(cfg.log_level)
    prefect_env(cfg.data_dir)
    from k2.flows import FLOWS
    from k2.flows.runtime import standalone

    with standalone(cfg, f"k2 {name}"):
        return FLOWS[name](tables)


def _show(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("table", "day") else "right")
    for row in rows:
        table.add_row(*(Text(str(v)) for v in row))
    Console().print(table)


def _run(flow: str, tables: list[str] | None, data_dir: Path | None, json_out: bool,
         busy: str) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """Run `flow`; print it as JSON, or say it skipped. Return the result and whether to show it as a table."""
    with reported():
        result = run_flow(flow, tables, data_dir)
    if json_out:
        typer.echo(json.dumps(result))
    elif result.get("skipped"):
        typer.echo(f"{busy}; this one skipped")
    return result, not json_out and not result.get("skipped")


def offload(table: list[str] = TABLE, data_dir: Path = DATA_DIR, json_out: bool = JSON) -> None:
    """Archive the hot tables to Iceberg now (exactly once: rerun any time)."""
    result, show = _run("offload", table, data_dir, json_out, "another offload is running")
    if show:
        _show("offload", ["table", "rows", "commits", "watermark before", "watermark after", "seconds"],
              [[n, r["rows"], r["commits"], r["watermark_before"], r["watermark_after"], f"{r['seconds']:.2f}"]
               for n, r in result.items()])  # fmt: skip


def maintain(table: list[str] = TABLE, data_dir: Path = DATA_DIR, json_out: bool = JSON) -> None:
    """Compact small files, expire old snapshots, remove orphan files, and audit, now."""
    result, show = _run("maintenance", table, data_dir, json_out, "another maintenance run is in progress")
    if show:
        _show("maintenance", ["table", "files before", "files after", "partitions compacted", "snapshots expired",
                              "orphans removed", "seconds"],
              [[n, r["files_before"], r["files_after"], r["partitions_compacted"], r["snapshots_expired"],
                r["orphans_removed"], f"{r['seconds']:.2f}"] for n, r in result.items()])  # fmt: skip


def reconcile(table: list[str] = TABLE, data_dir: Path = DATA_DIR, json_out: bool = JSON) -> None:
    """Compare hot and archive per table and day; exit 1 if any day differs."""
    result, show = _run("reconcile", table, data_dir, json_out, "another reconcile run is in progress")
    if show:
        rows = []
        for name, r in result.items():
            rows.append([name, r["days"], len(r["differences"]) or "none"])
            for d in r["differences"]:
                checksum = "" if d["hot_checksum"] == d["archive_checksum"] else " (checksum differs)"
                rows.append([f"  {d['day']}", "", f"hot {d['hot_rows']}, archive {d['archive_rows']}{checksum}"])
        _show("reconcile", ["table", "days compared", "differences"], rows)
    if not result.get("skipped") and any(r["differences"] for r in result.values()):
        raise typer.Exit(1)


__all__ = ["maintain", "offload", "reconcile"]
