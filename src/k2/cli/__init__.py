"""The `k2` command."""

from __future__ import annotations

import faulthandler
import signal
import sys
from pathlib import Path

import typer

# Typer 0.29 vendors click; its usage errors are caught to print them as one line.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from k2 import __version__
from k2.cli.archive import maintain, offload, reconcile
from k2.cli.cluster import api, feed, ingest
from k2.cli.common import STATE
from k2.cli.export import export, replay
from k2.cli.flows import app as flows_app
from k2.cli.health import health
from k2.cli.normalize import normalize
from k2.cli.query import candles, gaps, rejects, symbols, trades
from k2.cli.simulate import simulate
from k2.cli.up import up
from k2.cli.watch import watch

app = typer.Typer(
    name="k2",
    help="K2 market data: exact trade capture, a hot ClickHouse store and an Iceberg archive.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: readable at 80 columns and when piped
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"k2 {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    config: Path = typer.Option(
        None,
        "--config",
        "-c",
        metavar="FILE",
        help="Settings file (default: ./k2.toml if present, or $K2_CONFIG); "
        "may be given before or after the command.",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    STATE.config, STATE.verbose = config, verbose


app.command()(up)
app.command()(simulate)
app.command()(normalize)
app.command()(watch)
app.command()(trades)
app.command()(candles)
app.command()(export)
app.command()(replay)
app.command()(offload)
app.command()(maintain)
app.command()(reconcile)
app.command()(health)
app.command()(gaps)
app.command()(rejects)
app.command()(symbols)
app.command()(feed)
app.command()(ingest)
app.command()(api)
app.add_typer(flows_app, name="flows")

_CONFIG_FLAGS = ("--config", "-c")


def global_options_first(argv: list[str]) -> list[str]:
    """Move `--config FILE` (or `-c FILE`, `--config=FILE`) given after the command to the front,
    where the top-level options are parsed: `k2 trades --config k2.toml` works as users expect."""
    if not argv:
        return argv
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _CONFIG_FLAGS and i + 1 < len(argv):
            moved += [arg, argv[i + 1]]
            i += 2
            continue
        if arg.startswith("--config="):
            moved.append(arg)
        else:
            rest.append(arg)
        i += 1
    return moved + rest


def main() -> None:
    """The `k2` entry point: a bad flag or value is one line on stderr and exit 2,
    as any K2 error is. `kill -USR1 <pid>` prints every thread's stack to stderr, for a process
    that does not stop or does not move."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        code = app(args=global_options_first(sys.argv[1:]), prog_name="k2", standalone_mode=False)
    except NoArgsIsHelpError as err:
        typer.echo(err.ctx.get_help() if err.ctx else "k2 -h for help")
        sys.exit(0)
    except UsageError as err:
        hint = f" (see `{err.ctx.command_path} -h`)" if err.ctx is not None else ""
        typer.echo(f"k2: error: {err.format_message()}{hint}", err=True)
        sys.exit(2)
    except ClickException as err:
        typer.echo(f"k2: error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
