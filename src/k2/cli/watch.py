"""`k2 watch`: run the live feeds (or the built-in simulator) and show them, without storing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import typer

from k2.cli.common import positive, reported, run_until_signal, settings, setup_logging, stop_after
from k2.cli.status import StatusView, show_status
from k2.ingest.recorder import RecordingSink
from k2.ingest.runner import build_feeds, describe_gap, http_client, run_feeds, stop_feeds
from k2.ingest.stats import LIVE
from k2.instruments import load_instruments
from k2.records import Gap, gap_json
from k2.settings import with_venues
from k2.simulator.simulator import from_settings


def gaps_file(record: Path) -> Path:
    """Where `k2 watch --record FILE` lists the gaps it could not repair before it stopped."""
    return record.with_name(record.name + ".gaps.jsonl")


def watch(
    simulate: bool = typer.Option(
        False, "--simulate", help="Run against the built-in simulator (offline)."
    ),
    duration: float = typer.Option(
        None, help="Stop after this many seconds (default: until Ctrl-C)."
    ),
    record: Path = typer.Option(
        None, help="Append every emitted normalized trade here as JSON lines."
    ),
) -> None:
    """Capture trades from the venues and show per-symbol status live; nothing is stored.

    Rejected messages are quarantined to JSON lines (setting ingest.quarantine_file, default
    <data_dir>/quarantine/rejects.jsonl). A stop (Ctrl-C, SIGTERM, --duration) ends within
    shutdown_grace_s, gap repairs already queued included; with --record, gaps still open then are
    written to <record>.gaps.jsonl and the exit status is 1.
    """
    with reported():
        positive(duration=duration)
        cfg = settings()
        setup_logging(cfg.log_level)
        instruments = load_instruments(cfg.instruments_file)
        quarantine = cfg.ingest.quarantine_file or cfg.data_dir / "quarantine" / "rejects.jsonl"
        left: list[Gap] = []

        async def main(stop: asyncio.Event) -> None:
            nonlocal cfg
            sim = from_settings(cfg, instruments) if simulate else None
            if sim is not None:
                sim.paused = True  # the market opens once every feed is live
                await sim.start()
                cfg = with_venues(cfg, sim.venue_settings())
            sink = RecordingSink(record, quarantine)
            try:
                async with http_client() as http:
                    feeds = build_feeds(cfg, instruments, sink, http)
                    view = StatusView(feeds)
                    feeds_stop, repair_stop = asyncio.Event(), asyncio.Event()
                    async with asyncio.TaskGroup() as tg:
                        timer = tg.create_task(stop_after(stop, duration))
                        shown = tg.create_task(show_status(view, feeds_stop))
                        hint = None if simulate else "`k2 watch --simulate`"
                        task = tg.create_task(run_feeds(feeds, feeds_stop, repair_stop, hint))
                        side = [timer, shown]
                        if sim is not None:
                            live = lambda: all(f.stats.state == LIVE for f in feeds)  # noqa: E731
                            side.append(tg.create_task(sim.open_when(live, stop)))
                        await stop.wait()
                        started = time.monotonic()
                        if sim is not None:
                            sim.paused = True
                            await asyncio.sleep(0.5)  # what the simulator already sent arrives
                        left.extend(
                            await stop_feeds(
                                feeds,
                                feeds_stop,
                                repair_stop,
                                task,
                                started + cfg.shutdown_grace_s - 0.5,
                            )
                        )
                        for t in side:
                            t.cancel()
                    print(view.summary(final=True))
            finally:
                sink.close()
                if sim is not None:
                    await sim.stop()
            for gap in left:
                typer.echo(f"k2 watch: gap still open at stop: {describe_gap(gap)}", err=True)
            if record is not None:
                if left:
                    gaps_file(record).write_bytes(
                        b"".join(orjson.dumps(gap_json(g)) + b"\n" for g in left)
                    )
                else:
                    gaps_file(record).unlink(missing_ok=True)

        run_until_signal(main)
    if left and record is not None:
        typer.echo(
            f"k2 watch: {len(left)} gaps left open; the recording lacks their trades: see "
            f"{gaps_file(record)}",
            err=True,
        )
        raise typer.Exit(1)
