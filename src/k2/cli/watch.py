"""`k2 watch`: run the live feeds (or the built-in simulator) and show them, without storing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from k2.cli.common import reported, run_until_signal, settings, setup_logging, stop_after
from k2.cli.status import StatusView, show_status
from k2.ingest.recorder import RecordingSink
from k2.ingest.runner import build_feeds, http_client, run_feeds
from k2.instruments import load_instruments
from k2.settings import with_venues
from k2.simulator.simulator import from_settings


def watch(
    simulate: bool = typer.Option(False, "--simulate", help="Run against the built-in simulator (offline)."),
    duration: float = typer.Option(None, help="Stop after this many seconds (default: until Ctrl-C)."),
    record: Path = typer.Option(None, help="Append every emitted normalized trade here as JSON lines."),
) -> None:
    """Capture trades from the venues and show per-symbol status live; nothing is stored.

    Rejected messages are quarantined to JSON lines (setting ingest.quarantine_file, default
    <data_dir>/quarantine/rejects.jsonl).
    """
    with reported():
        cfg = settings()
        setup_logging(cfg.log_level)
        instruments = load_instruments(cfg.instruments_file)
        quarantine = cfg.ingest.quarantine_file or cfg.data_dir / "quarantine" / "rejects.jsonl"

        async def main(stop: asyncio.Event) -> None:
            nonlocal cfg
            sim = from_settings(cfg, instruments) if simulate else None
            if sim is not None:
                await sim.start()
                cfg = with_venues(cfg, sim.venue_settings())
            sink = RecordingSink(record, quarantine)
            try:
                async with http_client() as http:
                    feeds = build_feeds(cfg, instruments, sink, http)
                    view = StatusView(feeds)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(stop_after(stop, duration))
                        tg.create_task(show_status(view, stop))
                        tg.create_task(run_feeds(feeds, stop))
                    print(view.summary(final=True))
            finally:
                sink.close()
                if sim is not None:
                    await sim.stop()

        run_until_signal(main)
