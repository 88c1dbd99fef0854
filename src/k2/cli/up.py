"""`k2 up`: the whole embedded platform in one process."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from k2.cli.common import (
    prefect_env,
    reported,
    run_until_signal,
    settings,
    setup_logging,
    stop_after,
)
from k2.cli.status import StatusView, show_status
from k2.instruments import load_instruments


def up(
    simulate: bool = typer.Option(False, "--simulate", help="Capture from the built-in simulator (fully offline)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Where the data lives (setting data_dir, default ./data)."),
    duration: float = typer.Option(None, help="Stop cleanly after this many seconds (default: until Ctrl-C)."),
) -> None:
    """Run K2: live feeds -> hot ClickHouse store (bronze, silver, candles), the API, the schedules.

    Ctrl-C or SIGTERM stops cleanly: the in-flight batch is written, and the next `k2 up`
    resumes where this one stopped.
    """
    with reported():
        cfg = settings(**({"data_dir": data_dir} if data_dir else {}))
        setup_logging(cfg.log_level)
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
            if platform.feeds and platform.writer is not None:
                print(StatusView(platform.feeds, platform.status_rows).summary(final=True))

        run_until_signal(main)
