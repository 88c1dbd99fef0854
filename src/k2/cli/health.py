"""`k2 health`: feeds, freshness, offload, maintenance, reconcile and disk, each OK / WARN / FAIL.

Asks the running `k2 up` (its /health endpoint) when one holds the data directory; otherwise reads
the stopped data directory itself, and in the cluster shape (bus.bootstrap_servers set) the bus:
its broker, the ingest group's lag, and the feed and ingest processes' heartbeats. Exit code 0
(all OK), 1 (a warning) or 2 (a failure).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from k2.cli.common import reported, settings
from k2.cli.remote import call, reach, running_api
from k2.hotstore.owner import OwnedStore
from k2.settings import Settings

_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "bold red"}


def _from_running(url: str, cfg: Settings) -> dict[str, Any]:
    # 503 carries the report too: something failed.
    return dict(call(url, cfg.api, "GET", "/health", ok=(200, 503)).json())


def _from_data_dir(cfg: Settings, owner: OwnedStore) -> dict[str, Any]:
    from k2.archive import ops
    from k2.archive.status import ArchiveStatus
    from k2.archive.tables import TABLES
    from k2.instruments import load_instruments
    from k2.observe.health import HealthInputs, evaluate, report
    from k2.observe.hot import hot_state

    venues = [
        v
        for v, syms in load_instruments(cfg.instruments_file).items()
        if syms and cfg.venue(v).enabled
    ]
    rows, newest = hot_state(owner.store, venues)
    status = ArchiveStatus()
    ops.load_status(owner.store, status, TABLES)
    inputs = HealthInputs(time.time(), False, venues, cfg.data_dir, status, rows, newest)
    if cluster_shape(cfg):
        from k2.bus.status import read_bus

        inputs.bus = read_bus(cfg.bus)
        inputs.now = time.time()
    return report(evaluate(inputs, cfg.health))


def cluster_shape(cfg: Settings) -> bool:
    """Is this the cluster shape? Its processes are told where the bus is; `k2 up` never is."""
    return "bootstrap_servers" in cfg.bus.model_fields_set


def health(
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Data directory (setting data_dir, default ./data)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check that K2 is capturing, fresh and archived; exit 0 OK, 1 WARN, 2 FAIL.

    In the cluster shape (bus.bootstrap_servers set) it also checks the bus: the broker, the
    ingest group's lag, and every k2 feed and k2 ingest process by its heartbeat.
    """
    with reported():
        cfg = settings(**({"data_dir": data_dir} if data_dir else {}))
        url = running_api(cfg.data_dir)
        body = reach(
            cfg.data_dir,
            "k2 health",
            cfg.hotstore,
            lambda url: _from_running(url, cfg),
            lambda owner: _from_data_dir(cfg, owner),
        )
    if json_out:
        typer.echo(json.dumps(body, indent=2))
    else:
        shape = " (cluster shape)" if cluster_shape(cfg) else " (k2 up is not running)"
        table = Table(title=f"k2 health: {body['status']}{'' if url else shape}")
        for column in ("check", "status", "detail"):
            table.add_column(column, overflow="fold")
        for check in body["checks"]:
            # As text, never as markup: details quote venues and the store ("[/]" would crash Rich).
            table.add_row(
                Text(check["name"]),
                Text(check["status"], style=_STYLE[check["status"]]),
                Text(check["detail"]),
            )
        Console(width=160).print(table)
    raise typer.Exit(int(body["exit_code"]))
