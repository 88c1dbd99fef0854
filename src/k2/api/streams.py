"""The API's WebSocket streams (served under /api/v1): live trades and candles as they commit,
and a replay of stored trades from both tiers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect, status
from fastapi.concurrency import run_in_threadpool

from k2.api.live import QUEUE_MESSAGES, LiveFeed, Subscriber
from k2.api.params import FROM, TO, checked_filters
from k2.errors import InputError
from k2.hotstore import queries
from k2.hotstore.store import HotStore
from k2.instruments import resolve_filters
from k2.query import frames, stream, tiers
from k2.query.replay import runs
from k2.query.replay import speed as replay_speed

if TYPE_CHECKING:
    from k2.api.context import Context


def stream_routes(ctx: Context, store: Callable[[], HotStore]) -> APIRouter:
    """The streams, on `ctx`'s instruments and archive and the store `store()` returns."""
    router = APIRouter()

    filters = functools.partial(checked_filters, ctx)

    live_feed = LiveFeed(store)

    async def refuse(ws: WebSocket, err: Exception) -> None:
        """A mistake in a stream's request: close at once, the reason as the close reason."""
        await ws.close(code=status.WS_1008_POLICY_VIOLATION, reason=str(err)[:120])

    async def until_closed(ws: WebSocket) -> None:
        """Return when the client goes away (anything it sends is ignored)."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return

    @router.websocket("/stream/live")
    async def live(
        ws: WebSocket,
        venue: str | None = None,
        symbol: str | None = None,
        timeframe: str | None = None,
    ) -> None:
        """New trades as they become visible in silver, in batches ({"type": "trades", "rows":
        [...]}), and with `timeframe` the candles they change ({"type": "candles", ...}),
        filtered by venue and symbol. A client more than 1,000 batches behind is closed (1013)."""
        try:
            venue, symbol = resolve_filters(ctx.instruments, venue, symbol)
            if timeframe is not None:
                queries.timeframe(timeframe)
        except InputError as err:
            await refuse(ws, err)
            return
        await ws.accept()
        sub = Subscriber(venue, symbol, timeframe, asyncio.get_running_loop())
        live_feed.subscribe(sub)
        closed = asyncio.ensure_future(until_closed(ws))
        try:
            while True:
                getting = asyncio.ensure_future(sub.queue.get())
                await asyncio.wait({getting, closed}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    return  # the client went away
                message = getting.result()
                if message is None:
                    reason = f"too slow: more than {QUEUE_MESSAGES:,} batches behind"
                    await ws.close(code=status.WS_1013_TRY_AGAIN_LATER, reason=reason)
                    return
                await ws.send_text(orjson.dumps(message).decode())
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            live_feed.unsubscribe(sub)
            closed.cancel()

    @router.websocket("/stream/replay")
    async def replay_stream(
        ws: WebSocket,
        start: str | None = FROM,
        end: str | None = TO,
        venue: str | None = None,
        symbol: str | None = None,
        speed: str = "max",
    ) -> None:
        """Stored trades of [from, to) from both tiers, every venue merged in exchange-time order,
        at real time times `speed` (or max), in batches ({"type": "trades", "rows": [...]}), then
        {"type": "end", "trades": N} and a normal close."""
        try:
            f = tiers.Filter(*filters(venue, symbol, start, end))
            if f.start_ns is None:
                raise InputError("from is required: where the replay starts")
            factor = replay_speed(speed)
        except InputError as err:
            await refuse(ws, err)
            return
        await ws.accept()
        until = f.end_ns if f.end_ns is not None else time.time_ns()
        chunks = stream.trade_chunks(store(), ctx.lake, f, f.start_ns, until)
        pieces = runs(chunks, factor)
        closed = asyncio.ensure_future(until_closed(ws))
        began, count = time.monotonic(), 0
        try:
            while (item := await run_in_threadpool(next, pieces, None)) is not None:
                due, rows = item
                wait = began + due - time.monotonic()
                if wait > 0:
                    await asyncio.wait({closed}, timeout=wait)
                if closed.done():
                    return
                await ws.send_text(
                    orjson.dumps({"type": "trades", "rows": frames.rows(rows)}).decode()
                )
                count += len(rows)
            await ws.send_text(orjson.dumps({"type": "end", "trades": count}).decode())
            await ws.close()
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            closed.cancel()

    return router
