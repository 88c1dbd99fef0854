"""What every command shares: settings from the entry point, logging, and error reporting."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import typer

from k2.errors import InputError, K2Error
from k2.settings import Settings, load_settings

EXIT_ERROR = 2


class State:
    """Options given before the command name (`k2 --config FILE <command>`)."""

    config: Path | None = None
    verbose: bool = False


STATE = State()


def settings(**overrides: Any) -> Settings:
    """Build the settings for this invocation (file, environment, then `overrides`)."""
    return load_settings(STATE.config, **overrides)


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr; third-party chatter only at WARNING and above."""
    logging.basicConfig(
        level=logging.DEBUG if STATE.verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    for noisy in (
        "websockets",
        "picows",
        "httpx",
        "httpcore",
        "prefect",
        "uvicorn.access",
        "pyiceberg",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def prefect_env(data_dir: Path) -> None:
    """Prefect's defaults for K2, unless the environment says otherwise (set before Prefect loads).

    Its local state (the temporary API server's database) lives in the data directory, it sends
    no analytics, and K2's own log lines reach Prefect's run logs too.
    """
    home = (data_dir / "prefect").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home))
    # K2 logs outside flows
    os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "k2")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    # Its temporary API server starts with the first flow run: ~10 s here, far longer on a busy
    # machine than Prefect's 20 s default allows.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def positive(**values: float | None) -> None:
    """Refuse a zero or negative value given for any of these options (None: not given)."""
    for name, value in values.items():
        if value is not None and not value > 0:  # (NaN fails too)
            raise InputError(f"--{name.replace('_', '-')} must be greater than 0, got {value:g}")


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    typer.echo(f"k2: error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn K2 errors into one clear line on stderr and a non-zero exit code."""
    try:
        yield
    except K2Error as err:
        fail(str(err))
    except OSError as err:  # a path the user named: missing, a directory, not permitted, disk full
        where = f"{err.filename}: " if err.filename else ""
        fail(f"{where}{err.strerror or err}")


def exit_now(code: int) -> NoReturn:
    """Exit at once, threads still running or not: child processes (Prefect's API server) are
    asked to stop first, output is flushed, and no interpreter clean-up waits for anything."""
    for child in _children():
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGTERM)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:  # field 4, after "pid (comm) state"
                found.append(int(entry.name))
    return found


def run_until_signal(main: Callable[[asyncio.Event], Any]) -> Any:
    """Run `main(stop)` on a new event loop; Ctrl-C and SIGTERM set `stop` for a clean finish, and
    a second one exits at once."""

    async def runner() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                print("k2: second signal: exiting now", file=sys.stderr)
                exit_now(130)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            return await main(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    return asyncio.run(runner())


async def stop_after(stop: asyncio.Event, duration: float | None) -> None:
    """Set `stop` after `duration` seconds (never, if None)."""
    if duration is None:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), duration)
    stop.set()
