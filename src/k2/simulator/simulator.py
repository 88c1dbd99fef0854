"""The simulator: every simulated venue on loopback, one market clock,
optional ground-truth record."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import orjson

from k2.errors import ConfigError, InputError
from k2.instruments import Instruments
from k2.settings import Settings, SimulatorSettings
from k2.simulator import binance, coinbase, kraken
from k2.simulator.faults import Faults, parse_faults
from k2.simulator.market import POISONED, SimTrade, SymbolMarket, poison_kind
from k2.simulator.server import VenueServer
from k2.timeutil import ns_to_rfc3339

# what `k2 simulate` prints after its `export` lines: a shell comment, so the output can still be
# sourced, that tells a reader the variables are all there (their number depends on the faults)
EXPORTS_END = "# k2 simulate: serving; the variables above point K2 at it"


def read_exports(stdout: IO[bytes]) -> dict[str, str]:
    """The `K2_...` variables a `k2 simulate` process prints first, read from its stdout up to
    the line that ends them; ValueError on anything else."""
    exports: dict[str, str] = {}
    while (line := stdout.readline().decode().strip()) != EXPORTS_END:
        if not line.startswith("export K2_"):
            raise ValueError(f"k2 simulate printed {line!r} among its exports")
        key, _, value = line.removeprefix("export ").partition("=")
        exports[key] = value
    return exports


log = logging.getLogger(__name__)

# Every venue the simulator serves; each server class declares its own wire details.
SERVERS: dict[str, type[VenueServer]] = {
    "binance": binance.BinanceSim,
    "kraken": kraken.KrakenSim,
    "coinbase": coinbase.CoinbaseSim,
}
SIMULATED_VENUES = tuple(SERVERS)


class Simulator:
    """Serves every venue in `instruments` on loopback until stopped."""

    def __init__(
        self,
        instruments: Instruments,
        *,
        seed: int = 1,
        trades_per_second: float = 5.0,
        faults: Faults | None = None,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        record: Path | None = None,
        tick_s: float = 0.02,
        history: int = 50_000,
    ) -> None:
        self.seed, self.rate, self.host, self.tick_s = seed, trades_per_second, host, tick_s
        self.burst_every_s, self.burst_for_s, self.burst_factor = 0.0, 0.0, 1.0  # no bursts
        self.faults = faults or Faults(seed=seed)
        f = self.faults
        self.servers: dict[str, VenueServer] = {}
        for venue, symbols in instruments.items():
            if not symbols:
                continue
            server = SERVERS.get(venue)
            if server is None:
                # Skipping it would leave that feed pointed at the real venue: not offline at all.
                raise ConfigError(
                    f"the simulator cannot serve venue {venue!r} (it serves "
                    f"{', '.join(SIMULATED_VENUES)}); disable the venue or remove its symbols"
                )
            markets = {
                s: SymbolMarket(
                    venue,
                    s,
                    server.split(s)[0],
                    seed,
                    server.first_id,
                    server.id_step_max,
                    history,
                    text=server.text,
                    drop_p=f.drop_p if f.on("gaps") else 0.0,
                    duplicate_p=f.duplicate_p if f.on("duplicates") else 0.0,
                    delay_p=f.delay_p if f.on("reorder") else 0.0,
                    garbage_p=f.garbage_p if f.on("malformed") else 0.0,
                    poison_p=f.poison_p if f.on("poison") else 0.0,
                )
                for s in symbols
            }
            self.servers[venue] = server(markets, f, host, (ports or {}).get(venue, 0))
        self._record_path = record
        self._record: IO[bytes] | None = None
        self._clock_task: asyncio.Task[None] | None = None
        self._owed: dict[tuple[str, str], float] = {}
        self.paused = False
        self.fault_seconds: float | None = None

    def open_market(self) -> None:
        """Start trading (after starting paused);
        faults run for `fault_seconds` from now, if set."""
        if self.fault_seconds is not None:
            self.faults.active_until = time.monotonic() + self.fault_seconds
        self.paused = False

    def subscribed(self, clients: int) -> bool:
        """Has every symbol of every venue at least `clients` connections subscribed to it?"""
        return all(
            sum(market.symbol in conn.symbols for conn in server.conns) >= clients
            for server in self.servers.values()
            for market in server.markets.values()
        )

    async def open_when(self, ready: Callable[[], bool], stop: asyncio.Event) -> None:
        """Open the market (it should start paused) once `ready()` holds: every trade it makes is
        then one the clients could have seen."""
        while not stop.is_set() and not ready():  # noqa: ASYNC110 - `ready` is a predicate, not an event
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # subscriptions settle
        if not stop.is_set():
            self.open_market()

    def close_market(self) -> None:
        """Stop trading for good; WebSocket heartbeats and REST keep serving."""
        self.paused = True
        if self._record is not None:
            self._record.flush()  # the ground truth is whole from here on
        log.info("market closed: no new trades")

    # -- addresses ---------------------------------------------------------------------------------
    def ws_url(self, venue: str) -> str:
        return f"ws://{self.host}:{self.servers[venue].port}{self.servers[venue].ws_path}"

    def rest_url(self, venue: str) -> str:
        return f"http://{self.host}:{self.servers[venue].port}"

    def venue_settings(self) -> dict[str, dict[str, object]]:
        """Per-venue settings that point K2 at this simulator."""
        out: dict[str, dict[str, object]] = {}
        age = self.faults.connection_max_age_s
        for venue, server in self.servers.items():
            out[venue] = {"ws_url": self.ws_url(venue), "rest_url": self.rest_url(venue)}
            if server.cuts_connections and self.faults.on("rotation"):  # its "24 hours", compressed
                out[venue] |= {"max_connection_age_s": age, "rotate_margin_s": min(5.0, age / 3)}
        return out

    def env(self) -> dict[str, str]:
        """The same settings as `K2_` environment variables."""
        return {
            f"K2_VENUES__{venue.upper()}__{key.upper()}": str(value)
            for venue, values in self.venue_settings().items()
            for key, value in values.items()
        }

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._record_path is not None:
            self._record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record = self._record_path.open("wb")
        for venue, server in self.servers.items():
            try:
                await server.start()
            except OSError as err:
                await self.stop()
                why = (
                    "the port is already in use"
                    if err.errno == errno.EADDRINUSE
                    else (err.strerror or str(err))
                )
                raise InputError(
                    f"the simulator cannot serve {venue} on {server.host}:{server.bind_port}: "
                    f"{why} (choose other ports with --port)"
                ) from None
        self.faults.started = time.monotonic()
        self._clock_task = asyncio.create_task(self._clock())

    async def stop(self) -> None:
        if self._clock_task is not None:
            self._clock_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_task
        for server in self.servers.values():
            await server.stop()
        if self._record is not None:
            self._record.close()
            self._record = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the market clock --------------------------------------------------------------------------
    def rate_at(self, now_ns: int) -> float:
        """Trades per second per symbol at `now_ns`: the rate, times `burst_factor` during the
        first `burst_for_s` seconds of every `burst_every_s` (wall clock)."""
        every = self.burst_every_s
        if every and (now_ns / 1e9) % every < self.burst_for_s:
            return self.rate * self.burst_factor
        return self.rate

    async def _clock(self) -> None:
        last = time.time_ns()
        while True:
            await asyncio.sleep(self.tick_s)
            now = time.time_ns()
            if self.paused:
                last = now
                continue
            faults_on = self.faults.active()
            elapsed = (now - last) / 1e9
            for venue, server in self.servers.items():
                for market in server.markets.values():
                    key = (venue, market.symbol)
                    owed = self._owed.get(key, 0.0) + self.rate_at(now) * elapsed
                    n = int(owed)
                    self._owed[key] = owed - n
                    if n:
                        trades = market.generate(n, last, now, faults_on)
                        if self._record is not None:
                            self._write_truth(venue, market, trades)
                        await server.publish(market, trades)
            last = now

    def _write_truth(self, venue: str, market: SymbolMarket, trades: list[SimTrade]) -> None:
        assert self._record is not None
        base, quote = self.servers[venue].split(market.symbol)
        canonical = f"{base}/{quote}"
        self._record.write(
            b"".join(
                orjson.dumps(
                    {
                        "exchange": venue,
                        "symbol": market.symbol,
                        "canonical_symbol": canonical,
                        "trade_id": t.trade_id,
                        "price": t.price_text,
                        "amount": t.amount_text,
                        "taker_side": "buy" if t.taker_buy else "sell",
                        "ts_event": ns_to_rfc3339(t.ts_ns),
                    }
                    | ({"poisoned": poison_kind(t)} if t.fate == POISONED else {})
                )
                + b"\n"
                for t in trades
            )
        )

    def truth(self) -> Iterator[tuple[str, SymbolMarket, SimTrade]]:
        """Every trade generated (within each market's history), venue by venue."""
        for venue, server in self.servers.items():
            for market in server.markets.values():
                for t in market.trades:
                    yield venue, market, t


def from_settings(
    settings: Settings,
    instruments: Instruments,
    *,
    simulator: SimulatorSettings | None = None,
    faults: str | None = None,
    seed: int | None = None,
    record: Path | None = None,
    base_port: int = 0,
    tick_s: float = 0.02,
) -> Simulator:
    """Build a simulator for the enabled venues of `instruments` from the `[simulator]` settings
    (or `simulator`, if given; explicit arguments win)."""
    sim_cfg = simulator or settings.simulator
    seed = sim_cfg.seed if seed is None else seed
    spec = Faults(
        seed=seed,
        enabled=parse_faults(sim_cfg.faults if faults is None else faults),
        disconnect_every_s=sim_cfg.disconnect_every_s,
        connection_max_age_s=sim_cfg.connection_max_age_s,
        ping_interval_s=sim_cfg.ping_interval_s,
    )
    enabled = {
        venue: symbols for venue, symbols in instruments.items() if settings.venue(venue).enabled
    }
    ports = {v: base_port + i for i, v in enumerate(SERVERS)} if base_port else None
    sim = Simulator(
        enabled,
        seed=seed,
        trades_per_second=sim_cfg.trades_per_second,
        faults=spec,
        host=sim_cfg.host,
        ports=ports,
        record=record or sim_cfg.record_file,
        history=sim_cfg.history_per_symbol,
        tick_s=tick_s,
    )
    sim.fault_seconds = sim_cfg.fault_seconds
    sim.burst_every_s, sim.burst_for_s = sim_cfg.burst_every_s, sim_cfg.burst_for_s
    sim.burst_factor = sim_cfg.burst_factor
    return sim
