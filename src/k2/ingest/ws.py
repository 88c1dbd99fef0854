"""A WebSocket client connection for the feeds: complete messages as bytes, in order.

Built on picows, whose Cython frame parser costs ~0.6 µs per message where the pure-Python
websockets client costs ~7 µs (measured on this machine, bench/feed.py): Binance sends one trade
per message, so per-message cost is most of the feed's CPU. picows answers pings (echoing their
payload, as Binance requires) and pings an idle peer itself, dropping it if no pong comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

# Pause reading the socket when this many messages wait unread (TCP then pushes back).
MAX_QUEUED = 4096
RESUME_AT = MAX_QUEUED // 4
# The kernel's receive buffer, fixed rather than autotuned (to 32 MiB here): picows doubles its read
# buffer whenever a read fills it and parses all of a read at once, so a read of a full autotuned
# buffer queued ~90,000 messages past the pause above. 1 MiB is 0.1 s of a firehose on loopback,
# and 80 Mbit/s at 100 ms round trip, far above any venue's trade stream.
RECV_BUFFER = 2**20


class ConnectionClosed(Exception):
    """The connection ended: `code` and `reason` from the peer's close frame,
    or None if it just dropped."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(
            f"closed by peer ({code} {reason})" if code is not None else "connection lost"
        )
        self.code, self.reason = code, reason


class _Listener(WSListener):
    def __init__(self, conn: WsConnection) -> None:
        self._conn = conn
        self._parts: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if frame.fin:
                self._conn._push(frame.get_payload_as_bytes())
            else:
                self._parts = [frame.get_payload_as_bytes()]
        elif kind is WSMsgType.CONTINUATION:
            self._parts.append(frame.get_payload_as_bytes())
            if frame.fin:
                self._conn._push(b"".join(self._parts))
                self._parts = []
        elif kind is WSMsgType.CLOSE:
            code = int(frame.get_close_code().value)
            self._conn._peer_closed = ConnectionClosed(
                code, frame.get_close_message().decode("utf-8", "replace")
            )
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._conn._disconnected()


class WsConnection:
    """Receive whole messages with `await recv_many(limit)`; `send(text)`;
    `close()` or `abort()`.

    Each message is stamped with the wall clock when its last frame arrives (its `ts_recv`), not
    when the feed takes it: time spent queued here is part of K2's latency, not the venue's."""

    def __init__(self) -> None:
        self._messages: deque[bytes] = deque()
        self._stamps: deque[int] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._transport: WSTransport | None = None
        self._peer_closed: ConnectionClosed | None = None
        self._closed: ConnectionClosed | None = None
        self._paused = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        open_timeout: float,
        ping_interval: float,
        ping_timeout: float,
        max_size: int = 2**24,
    ) -> WsConnection:
        """Open a connection, or raise OSError / TimeoutError / picows.WSError saying why not."""
        conn = cls()
        transport, _ = await asyncio.wait_for(
            ws_connect(
                lambda: _Listener(conn),
                url,
                websocket_handshake_timeout=open_timeout,
                enable_auto_ping=ping_interval > 0,
                auto_ping_idle_timeout=ping_interval or 10,
                # picows waits for a pong at most as long as the idle time before the ping.
                auto_ping_reply_timeout=min(ping_timeout, ping_interval or ping_timeout),
                enable_auto_pong=True,
                max_frame_size=max_size,
                logger_name="k2",
            ),
            open_timeout,
        )
        conn._transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        return conn

    def _push(self, payload: bytes) -> None:
        self._messages.append(payload)
        self._stamps.append(time.time_ns())
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if len(self._messages) >= MAX_QUEUED and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.underlying_transport.pause_reading()

    def _disconnected(self) -> None:
        self._closed = self._peer_closed or ConnectionClosed(None, "connection lost")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    @property
    def unread(self) -> int:
        """Messages received and not yet taken by `recv_many()`."""
        return len(self._messages)

    async def recv_many(self, limit: int) -> tuple[list[bytes], list[int]]:
        """Return the messages received so far, oldest first, at most `limit` and at least one
        (waiting for it), with the time each arrived (ns); raise ConnectionClosed once the
        connection has ended and all are taken."""
        messages, stamps = self._messages, self._stamps
        while not messages:
            if self._closed is not None:
                raise self._closed
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if len(messages) <= limit:
            out, at = list(messages), list(stamps)
            messages.clear()
            stamps.clear()
        else:
            out = [messages.popleft() for _ in range(limit)]
            at = [stamps.popleft() for _ in range(limit)]
        if self._paused and len(messages) <= RESUME_AT and self._transport is not None:
            self._paused = False
            self._transport.underlying_transport.resume_reading()
        return out, at

    async def send(self, text: str) -> None:
        if self._closed is not None:
            raise self._closed
        assert self._transport is not None
        self._transport.send(WSMsgType.TEXT, text.encode())

    async def close(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109 - public signature; bounds only the handshake
        """Close with a close frame; drop the connection if the peer does not answer in time."""
        if self._transport is None or self._closed is not None:
            return
        self._transport.send_close()
        self._transport.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._transport.wait_disconnected(), timeout)

    def abort(self) -> None:
        """Drop the connection at once (no close handshake)."""
        if self._transport is not None:
            self._transport.disconnect(graceful=False)
