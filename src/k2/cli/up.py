"""`k2 up`: the whole embedded platform in one process."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import typer

from k2.cli.common import (
    exit_now,
    positive,
    prefect_env,
    reported,
    run_until_signal,
    settings,
    setup_logging,
    stop_after,
)
from k2.cli.status import StatusView, show_status
from k2.hotstore.store import check_data_dir
from k2.instruments import load_instruments


def up(
    simulate: bool = typer.Option(
        False, "--simulate", help="Capture from the built-in simulator (fully offline)."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Where the data lives (setting data_dir, default ./data)."
    ),
    duration: float = typer.Option(
        None, help="Stop cleanly after this many seconds (default: until Ctrl-C)."
    ),
    port: int = typer.Option(
        None,
        "--port",
        min=0,
        max=65535,
        help="Serve the API on this port (setting api.port, default 8000; 0: any free).",
    ),
) -> None:
    """Run K2: live feeds -> hot ClickHouse store (bronze, silver, candles), the API, the schedules.

    Ctrl-C, SIGTERM or --duration stop within shutdown_grace_s (15 s): queued gap repairs and the
    batch in flight are finished in that time if they can be, and the next `k2 up` resumes where
    this one stopped (gaps still open, trades the store did not take). Exit status 0; 1 if trades
    could not be written. A second Ctrl-C exits at once.
    """
    with reported():
        positive(duration=duration)
        cfg = settings(**({"data_dir": data_dir} if data_dir else {}))
        if port is not None:
            cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"port": port})})
        setup_logging(cfg.log_level)
        check_data_dir(cfg.data_dir)
        prefect_env(cfg.data_dir)
        from k2.embedded import Embedded  # brings in Prefect: only when it runs

        platform = Embedded(cfg, load_instruments(cfg.instruments_file), simulate=simulate)

        async def show(p: Any, stop: asyncio.Event) -> None:
            await show_status(StatusView(p.feeds, p.status_rows), stop)

        async def main(stop: asyncio.Event) -> None:
            timer = asyncio.create_task(stop_after(stop, duration))
            try:
                await platform.run(stop, show)
            finally:
                timer.cancel()
                platform.report.finished = time.monotonic()
            if platform.feeds and platform.writer is not None:
                print(StatusView(platform.feeds, platform.status_rows).summary(final=True))
            print(stop_line(platform.report))

        run_until_signal(main)
    report = platform.report
    code = 1 if report.unwritten else 0
    if report.forced:  # a flow run or a store call is still going: do not wait for it
        exit_now(code)
    raise typer.Exit(code)


def stop_line(report: Any) -> str:
    """What the stop left behind, in one line."""
    gaps = len(report.open_gaps)
    parts = [
        f"k2 up: stopped in {report.seconds():.1f} s",
        f"{gaps} gap{'s' * (gaps != 1)} still open (pending for the next start)"
        if gaps
        else "no gap left open",
        f"{report.unwritten:,} trades not written (the next start repairs them)"
        if report.unwritten
        else "everything written",
    ]
    if report.forced:
        parts.append("exited without waiting for work still running")
    return "; ".join(parts)
