"""A simulated venue on one loopback port: WebSocket streams and REST, with scripted faults.

Venue wire formats live in the venue modules; this module owns connections, fan-out and faults.

Besides the scripted faults (`Faults`), a fault can be started on demand, for a harness that
measures what one fault does (bench/faults.py): `GET /_sim/fault?name=<name>&seconds=<s>` on a
venue's port, with `name` one of on_demand.ON_DEMAND. It answers 200 with what it did, or 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import websockets
from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.protocol import State

from k2.simulator.faults import Faults
from k2.simulator.market import (
    DELAYED,
    DROPPED,
    DUPLICATED,
    POISONED,
    SimTrade,
    SymbolMarket,
    fmt_min,
    poisoned,
)
from k2.simulator.on_demand import CONTROL_PATH, USAGE, parse_request

log = logging.getLogger(__name__)


@dataclass(eq=False)
class SimConnection:
    ws: ServerConnection
    path: str
    opened: float = field(default_factory=time.monotonic)
    symbols: set[str] = field(default_factory=set)
    params: dict[str, str] = field(default_factory=dict)
    sequence: int = 0
    stalled: bool = False
    last_sent: float = field(default_factory=time.monotonic)
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def next_sequence(self) -> int:
        seq = self.sequence
        self.sequence += 1
        return seq


@dataclass
class HttpReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class VenueServer:
    """Base for the simulated venues. Subclasses supply the wire format and declare the rest."""

    name = ""
    batching = True  # one message per symbol and tick (else one per trade)
    # Trades in one batched message at most: a tick that owes more (a clock that fell behind under
    # load owed 20,000 at once) goes out as several messages, as a venue would send them.
    max_batch = 100
    drop_whole_message = False  # a dropped trade loses its whole message (sequence number skips)
    has_app_heartbeat = False
    stall_supported = True  # silence without closing is detectable only with app heartbeats
    cuts_connections = False  # the venue closes connections at a maximum age (the rotation fault)
    ws_path = ""  # the WebSocket endpoint's path
    first_id = 1  # every market's first trade id
    # ids advance by 1..id_step_max (venues that do not promise contiguous ids skip)
    id_step_max = 1

    @staticmethod
    def text(units: int, decimals: int) -> str:
        """Print `units` of 10**-decimals as the venue prints prices and amounts."""
        return fmt_min(units, decimals)

    @staticmethod
    def split(symbol: str) -> tuple[str, str]:
        """Return a venue symbol's base and quote asset."""
        base, _, quote = symbol.replace("-", "/").partition("/")
        return base, quote

    def __init__(
        self, markets: dict[str, SymbolMarket], faults: Faults, host: str, port: int
    ) -> None:
        self.markets, self.faults = markets, faults
        self.host, self.bind_port = host, port  # 0: any free port (see `port`)
        self.conns: set[SimConnection] = set()
        self._server: Server | None = None
        self._held: dict[str, list[tuple[SimTrade, int]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random(f"{faults.seed}:{self.name}:server")
        self.rest_requests = 0
        self.http_log: list[tuple[str, int, float]] = []  # path, status, monotonic time
        self._down_until = 0.0  # on-demand faults: monotonic deadlines
        self._ratelimited_until = 0.0

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    # -- wire format hooks ------------------------------------------------------------------------
    async def on_open(self, conn: SimConnection) -> bool:
        """Accept a new connection (return False to refuse it)."""
        return True

    async def on_client_message(self, conn: SimConnection, text: str) -> None:
        """Handle a message the client sent."""

    def encode(self, conn: SimConnection, market: SymbolMarket, trades: list[SimTrade]) -> bytes:
        raise NotImplementedError

    def encode_each(
        self, conn: SimConnection, market: SymbolMarket, trades: list[SimTrade]
    ) -> list[bytes]:
        """One message per trade (venues that do not batch); override to share per-call work."""
        return [self.encode(conn, market, [t]) for t in trades]

    def heartbeat(self, conn: SimConnection) -> bytes | None:
        return None

    def garbage(self, market: SymbolMarket) -> bytes:
        raise NotImplementedError

    def rest(self, path: str, query: list[tuple[str, str]], headers: Headers) -> HttpReply:
        raise NotImplementedError

    def rate_limited(self) -> HttpReply:
        return HttpReply(429, b'{"error":"rate limited"}', {"Retry-After": "1"})

    async def planned_cut(self, conn: SimConnection) -> None:
        """Close a connection at its maximum age (venues that have one)."""

    async def shutdown_notice(self, conn: SimConnection) -> None:
        """Warn a connection that the server is going away (venues that do)."""

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self._server = await websockets.serve(
            self._handle,
            self.host,
            self.bind_port,
            process_request=self._http,
            ping_interval=self.faults.ping_interval_s,
            ping_timeout=self.faults.ping_interval_s * 3,
            compression=None,
            max_size=2**20,
            max_queue=16,
            write_limit=2**22,
        )
        self._tasks.append(asyncio.create_task(self._timers()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, ws: ServerConnection) -> None:
        conn = SimConnection(ws, ws.request.path if ws.request else "/")
        conn.params = dict(parse_qsl(urlsplit(conn.path).query))
        if not await self.on_open(conn):
            return
        self.conns.add(conn)
        try:
            async for message in ws:
                if not conn.stalled:
                    await self.on_client_message(
                        conn, message if isinstance(message, str) else message.decode()
                    )
        except websockets.ConnectionClosed:
            pass
        finally:
            self.conns.discard(conn)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        query = parse_qsl(parts.query)
        if parts.path == CONTROL_PATH:
            reply = self._on_demand(dict(query))
            return connection.respond(reply.status, reply.body.decode())
        now = time.monotonic()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if now < self._down_until:
                return connection.respond(503, "the venue is down\n")
            return None
        self.rest_requests += 1
        if now < self._ratelimited_until or (
            self.faults.on("ratelimit") and self.faults.active() and self.rest_requests % 4 == 1
        ):
            reply = self.rate_limited()
        else:
            try:
                reply = self.rest(parts.path, query, request.headers)
            except Exception as err:  # a simulator bug should look like a venue 500, not hang
                log.exception("simulated %s REST failed", self.name)
                reply = HttpReply(500, f'{{"error":"{type(err).__name__}"}}'.encode())
        self.http_log.append((parts.path, reply.status, time.monotonic()))
        response = connection.respond(reply.status, "")
        headers = Headers({"Content-Type": "application/json", **reply.headers})
        headers["Content-Length"] = str(len(reply.body))
        return Response(reply.status, response.reason_phrase, headers, reply.body)

    # -- publishing -----------------------------------------------------------------------------
    def _plan(self, market: SymbolMarket, trades: list[SimTrade]) -> tuple[list[SimTrade], bool]:
        """Apply trade fates: return what goes on the wire now and whether the message is lost.

        Held trades carry a count of publishes to wait: a delayed trade waits until a batch of
        later trades has gone out, so it arrives in a later message than trades newer than it.
        """
        held: list[tuple[SimTrade, int]] = []
        release: list[SimTrade] = []
        for t, wait in self._held.pop(market.symbol, []):
            if wait > 0:
                held.append((t, wait - 1))
            else:
                release.append(t)
        out: list[SimTrade] = []
        lost = False
        for t in trades:
            if t.fate == DROPPED:
                lost = True
                continue
            if t.fate == DELAYED:
                held.append((t, 1))
                continue
            if t.fate == POISONED:
                out.append(poisoned(t))
                continue
            out.append(t)
            if t.fate == DUPLICATED:
                held.append((t, 0))  # sent again with the next batch
        if held:
            self._held[market.symbol] = held
        return out + release, lost and self.drop_whole_message

    async def publish(self, market: SymbolMarket, trades: list[SimTrade]) -> None:
        wire, lost = self._plan(market, trades)
        targets = [c for c in self.conns if market.symbol in c.symbols and not c.stalled]
        if not targets:
            return
        garbage = any(t.garbage_after for t in trades)
        for conn in targets:
            try:
                if lost:
                    conn.next_sequence()  # the venue sent it; this connection never got it
                elif wire:
                    if self.batching:
                        for i in range(0, len(wire), self.max_batch):
                            await conn.ws.send(
                                self.encode(conn, market, wire[i : i + self.max_batch]), text=True
                            )
                    else:
                        # One frame per trade, written in one go: a firehose of small messages
                        # through send() one by one would measure the simulator, not the client.
                        # Writing to the transport skips websockets' own state checks: do them here.
                        transport = conn.ws.transport
                        if (
                            conn.ws.state is not State.OPEN
                            or transport is None
                            or transport.is_closing()
                        ):
                            self.conns.discard(conn)
                            continue
                        transport.write(
                            b"".join(map(text_frame, self.encode_each(conn, market, wire)))
                        )
                        await conn.ws.drain()
                if garbage:
                    await conn.ws.send(self.garbage(market), text=True)
                conn.last_sent = time.monotonic()
            except (websockets.ConnectionClosed, ConnectionError, RuntimeError):
                self.conns.discard(conn)  # it closed while we wrote to it

    # -- timers: heartbeats and connection faults --------------------------------------------------
    async def _timers(self) -> None:
        f = self.faults
        last_disconnect = last_stall = last_shutdown = time.monotonic()
        abrupt = False
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for conn in list(self.conns):
                if conn.stalled:
                    continue
                if self.has_app_heartbeat and now - conn.last_sent >= 1.0:
                    beat = self.heartbeat(conn)
                    if beat is not None:
                        with contextlib.suppress(websockets.ConnectionClosed):
                            await conn.ws.send(beat, text=True)
                        conn.last_sent = now
                if f.on("rotation") and f.active() and now - conn.opened >= f.connection_max_age_s:
                    await self.planned_cut(conn)
            if not f.active():
                continue
            if f.on("disconnect") and now - last_disconnect >= f.disconnect_every_s:
                last_disconnect = now
                abrupt = not abrupt
                for conn in list(self.conns):
                    self._drop(conn, abrupt)
            if (
                f.on("stall")
                and self.stall_supported
                and now - last_stall >= f.disconnect_every_s * 1.7
            ):
                last_stall = now
                victims = [c for c in self.conns if not c.stalled]
                if victims:
                    self._stall(self._rng.choice(victims))
            if f.on("shutdown") and now - last_shutdown >= f.disconnect_every_s * 1.3:
                last_shutdown = now
                for conn in list(self.conns)[:1]:
                    await self.shutdown_notice(conn)

    def _on_demand(self, query: dict[str, str]) -> HttpReply:
        asked = parse_request(query)
        if asked is None:
            return HttpReply(400, USAGE.encode())
        name, seconds = asked
        until, conns = time.monotonic() + seconds, list(self.conns)
        if name == "outage":
            self._down_until = until
            for conn in conns:
                self._drop(conn, abrupt=True)
        elif name == "silent":
            for conn in conns:
                self._stall(conn, seconds)
        else:
            self._ratelimited_until = until
        did = f"{self.name}: {name} for {seconds:g} s, {len(conns)} connections"
        log.warning("simulated %s", did)
        return HttpReply(200, f"{did}\n".encode())

    def _drop(self, conn: SimConnection, abrupt: bool) -> None:
        self.conns.discard(conn)
        if abrupt and conn.ws.transport is not None:
            conn.ws.transport.abort()  # as if the network failed: no close frame
        else:
            asyncio.get_running_loop().create_task(conn.ws.close(1001, "simulated disconnect"))

    def _stall(self, conn: SimConnection, seconds: float | None = None) -> None:
        # Go silent without closing: only the client's heartbeat watchdog can notice.
        conn.stalled = True

        async def later() -> None:
            await asyncio.sleep(self.faults.stall_s if seconds is None else seconds)
            self._drop(conn, abrupt=True)

        self._tasks.append(asyncio.create_task(later()))

    def close_later(
        self, conn: SimConnection, seconds: float, code: int = 1000, reason: str = ""
    ) -> None:
        async def later() -> None:
            await asyncio.sleep(seconds)
            self.conns.discard(conn)
            with contextlib.suppress(Exception):
                await conn.ws.close(code, reason)

        self._tasks.append(asyncio.create_task(later()))


def text_frame(payload: bytes) -> bytes:
    """Serialize one unfragmented, unmasked (server-to-client)
    WebSocket text frame (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpReply:
    return HttpReply(status, orjson.dumps(body), headers or {})
