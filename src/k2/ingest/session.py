"""One live WebSocket feed per venue: connect, subscribe, watch, rotate, reconnect. No venue names.

The session owns connections, not data: the messages a connection has received go, in order and
as many as are waiting (up to MAX_MESSAGES), to `on_messages`, which parses them and says what
they held so the session can react (trades delivered; the venue's shutdown notice => rotate now).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

from k2.ingest import stats as st
from k2.ingest.backoff import Backoff
from k2.ingest.ws import ConnectionClosed, WsConnection
from k2.settings import IngestSettings

log = logging.getLogger(__name__)
_conn_numbers = itertools.count(1)
# A rotation switches to the new connection once it delivers a trade, or after this long.
SWITCH_AFTER_S = 10.0
# Messages handed to `on_messages` at once when many wait: per-message overhead is paid per run,
# and the event loop gets a turn between runs (a run of 512 Binance messages takes ~1 ms).
MAX_MESSAGES = 512


class Delivered(NamedTuple):
    """What a run of messages held that the session acts on."""

    trades: bool  # at least one trade
    shutdown: bool  # the venue announced it will close this connection


@dataclass(eq=False)
class Connection:
    conn_id: str
    ws: WsConnection
    opened_at: float = field(default_factory=time.monotonic)
    last_rx: float = field(default_factory=time.monotonic)
    delivering: bool = False  # has delivered at least one trade
    rotate_now: bool = False  # the venue announced it will close this connection
    last_sequence: int | None = None


# (messages in arrival order, local receive time in UTC ns, the connection) -> what they held
# (messages, the time each arrived in ns, their connection)
MessageHandler = Callable[[list[bytes], list[int], Connection], Awaitable[Delivered]]
ConnectedHandler = Callable[[Connection, bool], Awaitable[None]]


def describe_failure(err: BaseException, url: str) -> tuple[st.FeedState, str]:
    """Return (state, plain-words reason) for a failed connection attempt."""
    host = urlsplit(url).hostname or url
    if isinstance(err, socket.gaierror):
        return st.OFFLINE, f"cannot resolve {host} (no internet or DNS?)"
    if isinstance(err, OSError) and err.errno in (101, 113):  # ENETUNREACH, EHOSTUNREACH
        return st.OFFLINE, f"network unreachable for {host} (no internet?)"
    if isinstance(err, ConnectionRefusedError):
        return st.RECONNECTING, f"connection refused by {host}"
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        return st.RECONNECTING, f"timed out connecting to {host}"
    return st.RECONNECTING, f"{type(err).__name__}: {err}"


class FeedSession:
    """Keeps a venue's WebSocket feed up until `stop` is set."""

    def __init__(
        self,
        *,
        venue: str,
        url: str,
        subscribe: list[str],
        on_messages: MessageHandler,
        on_connected: ConnectedHandler,
        settings: IngestSettings,
        stats: st.FeedStats,
        heartbeat_timeout_s: float | None,
        max_connection_age_s: float | None,
        rotate_margin_s: float,
        backoff: Backoff | None = None,
    ) -> None:
        self.venue, self.url, self._subscribe = venue, url, subscribe
        self._on_messages, self._on_connected = on_messages, on_connected
        self._settings, self.stats = settings, stats
        self._heartbeat_timeout = heartbeat_timeout_s
        self._rotate_at = (
            None
            if max_connection_age_s is None
            else max(max_connection_age_s - rotate_margin_s, 1.0)
        )
        self._backoff = backoff or Backoff.from_settings(settings)
        self._stop = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, serve, and reconnect with backoff until `stop` is set."""
        self._stop = stop
        ever_connected = False
        try:
            while not stop.is_set():
                self.stats.set_state(st.CONNECTING if not ever_connected else st.RECONNECTING)
                try:
                    conn = await self._open()
                except Exception as err:  # noqa: BLE001 - any failure to connect is retried with backoff
                    state, reason = describe_failure(err, self.url)
                    delay = self._backoff.next_delay()
                    self._report_down(state, reason, delay)
                    await self._sleep(delay)
                    continue
                self._backoff.connected()
                if ever_connected:
                    self.stats.reconnects += 1
                # Every connection opened here follows an outage (or the start):
                # repair from cursors.
                await self._on_connected(conn, True)
                ever_connected = True
                reason = await self._serve(conn)
                if stop.is_set():
                    break
                delay = self._backoff.next_delay()
                self._report_down(st.RECONNECTING, reason, delay)
                await self._sleep(delay)
        finally:
            self.stats.set_state(st.STOPPED)
            for task in list(self._closing):
                with contextlib.suppress(Exception):
                    await task

    def _report_down(self, state: st.FeedState, reason: str, delay: float) -> None:
        detail = f"{reason}; retry {self._backoff.attempts} in {delay:.1f} s"
        if (state, reason) != (self.stats.state, self.stats.state_detail.split("; retry")[0]):
            log.warning("%s feed down: %s", self.venue, detail)
        self.stats.set_state(state, detail)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _open(self) -> Connection:
        ws = await WsConnection.connect(
            self.url,
            open_timeout=self._settings.connect_timeout_s,
            ping_interval=self._settings.ping_interval_s,
            ping_timeout=self._settings.ping_timeout_s,
        )
        try:
            for message in self._subscribe:
                await ws.send(message)
        except Exception:
            await ws.close()
            raise
        conn = Connection(f"{self.venue}-{next(_conn_numbers)}", ws)
        self.stats.connects += 1
        self.stats.set_state(st.LIVE)
        log.info("%s connected (%s)", self.venue, conn.conn_id)
        return conn

    async def _read(self, conn: Connection) -> str:
        """Deliver every message of `conn` to the handler; return why the connection ended."""
        ws = conn.ws
        try:
            while True:
                raws, arrived = await ws.recv_many(MAX_MESSAGES)
                conn.last_rx = time.monotonic()
                delivered = await self._on_messages(raws, arrived, conn)
                if delivered.trades:
                    conn.delivering = True
                if delivered.shutdown and not conn.rotate_now:
                    log.info(
                        "%s: venue announced shutdown of %s; rotating", self.venue, conn.conn_id
                    )
                    conn.rotate_now = True
                if len(raws) == MAX_MESSAGES:
                    # more are waiting: let the other feeds and the writer run
                    await asyncio.sleep(0)
        except ConnectionClosed as err:
            return (
                f"closed by venue ({err.code} {err.reason})"
                if err.code is not None
                else "connection lost"
            )
        except Exception as err:  # a bug, not a venue problem: log it loudly, then reconnect
            log.exception(
                "%s: internal error while handling a message on %s", self.venue, conn.conn_id
            )
            self._close_later(conn)
            return f"internal error: {err!r}"

    def _close_later(self, conn: Connection) -> None:
        task = asyncio.create_task(conn.ws.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _serve(self, conn: Connection) -> str:
        """Serve `conn`, rotating make-before-break when due; return why service ended."""
        current, reader = conn, asyncio.create_task(self._read(conn))
        nxt: Connection | None = None
        nxt_reader: asyncio.Task[str] | None = None
        opening: asyncio.Task[Connection] | None = None
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            while True:
                waiters = {reader, stop_wait} | ({opening} if opening else set())
                await asyncio.wait(waiters, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                if self._stop.is_set():
                    for c in (current, nxt):
                        if c is not None:
                            self._close_later(c)
                    return "stopped"
                now = time.monotonic()
                if opening is not None and opening.done():
                    try:
                        nxt = opening.result()
                        nxt_reader = asyncio.create_task(self._read(nxt))
                        self.stats.set_state(st.LIVE, "rotating")
                    except Exception as err:  # noqa: BLE001 - a failed rotation keeps the old connection
                        log.warning("%s: rotation connection failed: %s", self.venue, err)
                    opening = None
                if reader.done():
                    why = reader.result()
                    if nxt is not None and nxt_reader is not None and not nxt_reader.done():
                        # The old connection ended before the switch: adopt the new one.
                        log.info(
                            "%s: %s ended (%s); continuing on %s",
                            self.venue,
                            current.conn_id,
                            why,
                            nxt.conn_id,
                        )
                        await self._on_connected(nxt, not nxt.delivering)
                        current, reader, nxt, nxt_reader = nxt, nxt_reader, None, None
                        self.stats.set_state(st.LIVE)
                        continue
                    return why
                if nxt is not None and nxt_reader is not None:
                    if nxt_reader.done():
                        log.warning(
                            "%s: rotation connection ended early (%s)",
                            self.venue,
                            nxt_reader.result(),
                        )
                        nxt, nxt_reader = None, None
                    elif nxt.delivering or now - nxt.opened_at > SWITCH_AFTER_S:
                        log.info("%s: rotated %s -> %s", self.venue, current.conn_id, nxt.conn_id)
                        self.stats.rotations += 1
                        self._close_later(current)
                        await self._on_connected(nxt, False)
                        current, reader, nxt, nxt_reader = nxt, nxt_reader, None, None
                        self.stats.set_state(st.LIVE)
                        continue
                # Silent = nothing read for the timeout and nothing waiting to be read: while the
                # feed is held back (the writer applying backpressure), messages queue up unread,
                # and that is K2 being behind, not the venue being silent.
                if (
                    self._heartbeat_timeout
                    and now - current.last_rx > self._heartbeat_timeout
                    and not current.ws.unread
                ):
                    self.stats.watchdog_trips += 1
                    log.warning(
                        "%s: nothing received on %s for %.0f s; reconnecting",
                        self.venue,
                        current.conn_id,
                        now - current.last_rx,
                    )
                    current.ws.abort()  # a silent peer will not answer a close handshake either
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
                    return f"silent for {self._heartbeat_timeout:.0f} s (watchdog)"
                due = current.rotate_now or (
                    self._rotate_at is not None and now - current.opened_at >= self._rotate_at
                )
                if due and nxt is None and opening is None:
                    opening = asyncio.create_task(self._open())
        finally:
            stop_wait.cancel()
            for task in (reader, nxt_reader, opening):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if (
                opening is not None
                and opening.done()
                and not opening.cancelled()
                and opening.exception() is None
            ):
                self._close_later(opening.result())
