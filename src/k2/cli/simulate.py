"""`k2 simulate`: serve the three venues' APIs on loopback until stopped."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import typer

from k2.cli.common import positive, reported, run_until_signal, settings, setup_logging, stop_after
from k2.instruments import load_instruments
from k2.simulator.faults import FAULTS
from k2.simulator.simulator import EXPORTS_END, Simulator, from_settings

log = logging.getLogger("k2.simulate")
FAULT_HELP = "none, all, or a comma-separated list of: " + ", ".join(FAULTS)


def simulate(
    seed: int = typer.Option(
        None, help="Seed for the trade sequence and fault schedule (setting simulator.seed)."
    ),
    record: Path = typer.Option(
        None, help="Write every generated trade here as JSON lines (ground truth)."
    ),
    faults: str = typer.Option(None, help=FAULT_HELP + " (setting simulator.faults)."),
    duration: float = typer.Option(
        None, help="Stop after this many seconds (default: run until Ctrl-C)."
    ),
    rate: float = typer.Option(
        None, help="Trades per second per symbol (setting simulator.trades_per_second)."
    ),
    port: int = typer.Option(
        8701,
        min=0,
        max=65533,
        help="First port: Binance on PORT, Kraken PORT+1, Coinbase PORT+2 (0: any free).",
    ),
    tick_ms: float = typer.Option(
        20.0, help="Market clock tick: trades are generated and sent every TICK ms."
    ),
    faults_for: float = typer.Option(
        None, help="Faults stop after this many seconds (default: they never stop)."
    ),
    market_for: float = typer.Option(
        None, help="No new trades after this many seconds; the APIs keep serving."
    ),
    clients: int = typer.Option(
        0,
        min=0,
        help="Keep the market closed until every symbol has this many connections subscribed "
        "(0: open at once): every client then sees the same trades from the first.",
    ),
) -> None:
    """Serve Binance, Kraken and Coinbase WebSocket and REST APIs on loopback, in their wire
    formats.

    The first lines printed are `export K2_...` lines that point K2 at the simulator, and then a
    `#` line that says they are all there.

    A fault can also be started on demand, on a venue's port: `GET
    /_sim/fault?name=outage|silent|ratelimit&seconds=S` (bench/faults.py uses it).
    """
    with reported():
        positive(
            rate=rate,
            tick_ms=tick_ms,
            duration=duration,
            faults_for=faults_for,
            market_for=market_for,
        )
        cfg = settings()
        setup_logging(cfg.log_level)
        update = {"trades_per_second": rate, "fault_seconds": faults_for}
        sim_cfg = cfg.simulator.model_copy(
            update={k: v for k, v in update.items() if v is not None}
        )
        sim = from_settings(
            cfg,
            load_instruments(cfg.instruments_file),
            simulator=sim_cfg,
            faults=faults,
            seed=seed,
            record=record,
            base_port=port,
            tick_s=tick_ms / 1000,
        )

        async def main(stop: asyncio.Event) -> None:
            sim.paused = True
            async with sim:
                for key, value in sim.env().items():
                    print(f"export {key}={value}")
                print(EXPORTS_END)
                sys.stdout.flush()
                opening = asyncio.create_task(trade(sim, clients, market_for, stop))
                log.info(
                    "simulating %d symbols at %.1f trades/s each (seed %d, faults: %s)",
                    sum(len(s.markets) for s in sim.servers.values()),
                    sim.rate,
                    sim.seed,
                    ", ".join(sorted(sim.faults.enabled)) or "none",
                )
                await stop_after(stop, duration)
                await stop.wait()
                opening.cancel()
            if record:
                log.info("ground truth written to %s", record)

        run_until_signal(main)


async def trade(
    sim: Simulator, clients: int, market_for: float | None, stop: asyncio.Event
) -> None:
    """Open the market (at once, or once `clients` connections subscribe to every symbol), and
    close it `market_for` seconds later."""
    if clients:
        log.info("market closed until %d clients subscribe to every symbol", clients)
        await sim.open_when(lambda: sim.subscribed(clients), stop)
    else:
        sim.open_market()
    if market_for is not None:
        await asyncio.sleep(market_for)
        sim.close_market()
