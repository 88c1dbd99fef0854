"""The `k2` command."""

from __future__ import annotations

from pathlib import Path

import typer

from k2 import __version__
from k2.cli.archive import maintain, offload, reconcile
from k2.cli.common import STATE
from k2.cli.health import health
from k2.cli.normalize import normalize
from k2.cli.query import candles, gaps, rejects, trades
from k2.cli.simulate import simulate
from k2.cli.up import up
from k2.cli.watch import watch

app = typer.Typer(
    name="k2",
    help="K2 market data: exact trade capture, a hot ClickHouse store and an Iceberg archive.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"k2 {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    config: Path = typer.Option(None, "--config", "-c", help="Settings file (default: ./k2.toml if present, or $K2_CONFIG)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    STATE.config, STATE.verbose = config, verbose


app.command()(up)
app.command()(simulate)
app.command()(normalize)
app.command()(watch)
app.command()(trades)
app.command()(candles)
app.command()(offload)
app.command()(maintain)
app.command()(reconcile)
app.command()(health)
app.command()(gaps)
app.command()(rejects)


def main() -> None:
    app()
