"""The API's data routes (served under /api/v1): trades, candles, exports, gaps, rejects,
instruments, and archive flows run on request. The streams are in api/streams.py."""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    Response,
)
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from k2.api import NDJSON, problems
from k2.api import cursor as pages
from k2.api.params import FROM, TO, checked_filters
from k2.api.security import same_origin_json
from k2.errors import ConfigError, InputError, K2Error
from k2.hotstore import queries
from k2.hotstore.store import HotStore
from k2.query import candle_tiers, coverage, frames, stream, tiers

if TYPE_CHECKING:
    from k2.api.context import Context

log = logging.getLogger(__name__)
JSON = "application/json"
PAGE: dict[int | str, dict[str, Any]] = {  # /trades and /candles, as the schema says
    200: {
        "description": "A page of rows, oldest first, and the cursor of the page before it",
        "content": {
            JSON: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "rows": {"type": "array", "items": {"type": "object"}},
                        "next": {"type": ["string", "null"]},
                    },
                    "required": ["rows", "next"],
                }
            }
        },
    }
}


class FlowRequest(BaseModel):
    """What to run a flow on."""

    model_config = ConfigDict(extra="forbid")
    tables: list[str] | None = None  # default: every archive table


def data_routes(ctx: Context, store: Callable[[], HotStore]) -> APIRouter:
    """The routes, on `ctx`'s instruments and archive and the store `store()` returns."""
    router = APIRouter(responses=problems.RESPONSES)

    filters = functools.partial(checked_filters, ctx)

    CURSOR = Query(
        None,
        description="The `next` of an earlier answer: the page before it, on that answer's "
        "filters and range (from and to are taken from the cursor).",
    )

    def paged(f: tiers.Filter, cursor: str, kind: str) -> tuple[tiers.Filter, list[int | str]]:
        """The first page's filters and the position a cursor names; venue and symbol given
        with it must be the first page's."""
        first, key = pages.decode(cursor, kind)
        given, held = (f.venue, f.symbol), (first.venue, first.symbol)
        if any(g is not None and g != h for g, h in zip(given, held, strict=True)):
            raise InputError("venue and symbol given with a cursor must be its first page's")
        return first, key

    LIMIT = Query(100, ge=1, le=tiers.MAX_LIMIT, description="At most this many rows (the latest).")

    def page_answer(rows: Any, after: str | None) -> Response:
        """{"rows": [...], "next": ...} serialized at once (no per-value encoder pass: a page can
        hold a million rows of text)."""
        body = orjson.dumps({"rows": frames.rows(rows), "next": after})
        return Response(body, media_type="application/json")

    @router.get("/trades", response_model=None, responses=PAGE)
    def trades(
        venue: str | None = None,
        symbol: str | None = None,
        start: str | None = FROM,
        end: str | None = TO,
        limit: int = LIMIT,
        cursor: str | None = CURSOR,
    ) -> Response:
        """Latest trades matching the filters, oldest first, from the hot store and, for days it
        no longer holds, the archive. `next` is the cursor of the page before this one (older
        trades), or null when there is none."""
        f = tiers.Filter(*filters(venue, symbol, start, end))
        before = None
        if cursor is not None:
            f, key = paged(f, cursor, "trades")
            before = (int(key[0]), str(key[1]), str(key[2]), int(key[3]))
        rows = tiers.trades(store(), ctx.lake, f, limit, before)
        after = pages.encode("trades", f, tiers.last_key(rows, 0)) if len(rows) == limit else None
        return page_answer(rows, after)

    @router.get("/candles", response_model=None, responses=PAGE)
    def candles(
        timeframe: str = "1m",
        venue: str | None = None,
        symbol: str | None = None,
        start: str | None = FROM,
        end: str | None = TO,
        limit: int = LIMIT,
        cursor: str | None = CURSOR,
    ) -> Response:
        """Latest candles of one timeframe, oldest first (the current window as it stands); the
        archive serves windows older than the hot store's first. `next` as for trades."""
        queries.timeframe(timeframe)
        f = tiers.Filter(*filters(venue, symbol, start, end))
        if cursor is None:
            rows = candle_tiers.candles(store(), ctx.lake, timeframe, f, limit)
        else:
            f, key = paged(f, cursor, timeframe)
            before = (int(key[0]), str(key[1]), str(key[2]))
            rows = candle_tiers.candles_before(store(), ctx.lake, timeframe, f, limit, before)
        after = (
            pages.encode(timeframe, f, candle_tiers.last_candle_key(rows, 0))
            if len(rows) == limit
            else None
        )
        return page_answer(rows, after)

    def export_response(
        kind: str, f: tiers.Filter, fmt: stream.Format, tf: str | None = None
    ) -> StreamingResponse:
        if f.start_ns is None:
            raise InputError("from is required: the start of the range to export")
        end = f.end_ns if f.end_ns is not None else time.time_ns()
        if tf is None:
            chunks = stream.trade_chunks(store(), ctx.lake, f, f.start_ns, end)
        else:
            chunks = stream.candle_chunks(store(), ctx.lake, tf, f, f.start_ns, end)
        name = f"k2-{kind}-{f.start_ns // 1_000_000_000}-{end // 1_000_000_000}.{fmt}"
        return StreamingResponse(
            stream.encode(chunks, fmt, stream.SCHEMAS[kind]),
            media_type=stream.MEDIA_TYPES[fmt],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    EXPORT: dict[int | str, dict[str, Any]] = {
        200: {"content": {t: {} for t in stream.MEDIA_TYPES.values()}}
    }

    @router.get("/export/trades", response_class=StreamingResponse, responses=EXPORT)
    def export_trades(
        venue: str | None = None,
        symbol: str | None = None,
        start: str | None = FROM,
        end: str | None = TO,
        format: stream.Format = stream.Format.jsonl,
    ) -> StreamingResponse:
        """Every trade in [from, to) matching the filters, in time order, from the hot store and
        the archive alike, streamed as JSON lines, CSV, Parquet or an Arrow IPC stream; no row
        limit, in bounded memory. `from` is required; `to` defaults to now."""
        return export_response("trades", tiers.Filter(*filters(venue, symbol, start, end)), format)

    @router.get("/export/candles", response_class=StreamingResponse, responses=EXPORT)
    def export_candles(
        timeframe: str = "1m",
        venue: str | None = None,
        symbol: str | None = None,
        start: str | None = FROM,
        end: str | None = TO,
        format: stream.Format = stream.Format.jsonl,
    ) -> StreamingResponse:
        """Every candle of one timeframe with its window in [from, to), streamed like
        /api/export/trades."""
        queries.timeframe(timeframe)
        f = tiers.Filter(*filters(venue, symbol, start, end))
        return export_response("candles", f, format, timeframe)

    @router.get("/gaps")
    def gaps(
        venue: str | None = None,
        outcome: str | None = None,
        start: str | None = FROM,
        end: str | None = TO,
        limit: int = LIMIT,
    ) -> dict[str, Any]:
        """Latest detected gaps with their repair outcome, oldest first."""
        venue, _, start_ns, end_ns = filters(venue, None, start, end)
        return {"rows": queries.gaps(store(), venue, outcome, start_ns, end_ns, limit)}

    @router.get("/rejects")
    def rejects(
        venue: str | None = None, start: str | None = FROM, end: str | None = TO, limit: int = LIMIT
    ) -> dict[str, Any]:
        """Latest quarantined (rejected) messages with the reason, oldest first."""
        venue, _, start_ns, end_ns = filters(venue, None, start, end)
        return {"rows": queries.rejects(store(), venue, start_ns, end_ns, limit)}

    @router.get("/symbols")
    def symbols() -> dict[str, Any]:
        """Every instrument: venue, venue symbol, canonical symbol, trades stored in either tier,
        first and last trade."""
        return {"rows": coverage.symbols(store(), ctx.lake, ctx.instruments)}

    @router.get("/symbols/days")
    def symbol_days(
        venue: str | None = None,
        symbol: str | None = None,
        start: str | None = Query(
            "7d", alias="from", description="From this time (default: 7 days ago); same forms."
        ),
        end: str | None = TO,
    ) -> dict[str, Any]:
        """Per market and day: which tiers hold it (hot, archive), their trades, open gaps, and
        whether the day is complete (every gap repaired, the archive holding what hot holds)."""
        f = tiers.Filter(*filters(venue, symbol, start, end))
        return {"rows": coverage.days(store(), ctx.lake, ctx.instruments, f)}

    @router.post(
        "/flows/{name}",
        dependencies=[Depends(same_origin_json)],
        response_model=None,
        responses={
            200: {"content": {NDJSON: {}}},
            403: problems.answer("A request from another origin or site"),
            404: problems.answer("No such flow"),
            415: problems.answer("The body is not JSON"),
            500: problems.answer("The flow failed"),
        },
    )
    def run_flow(name: str, body: FlowRequest, request: Request) -> dict[str, Any] | Response:
        """Run an archive flow now, in this process (offload, maintenance or reconcile).

        Takes a JSON body ({"tables": [...]}, or {} for every table) and no foreign Origin. With
        `Accept: application/x-ndjson` the answer streams as the flow runs, one JSON object a
        line: {"event": "table", ...} as each table starts and ends (k2.flows.progress), then
        {"event": "result", "result": {...}} or {"event": "error", "status": 400 or 500,
        "detail": "..."}.
        """
        from k2.archive.tables import table_names  # (PyIceberg and Prefect: only when a flow runs)
        from k2.flows import FLOWS
        from k2.flows.progress import OnTable

        table = body.tables
        if name not in FLOWS:
            raise HTTPException(
                status_code=404, detail=f"no flow {name!r}; flows: {', '.join(FLOWS)}"
            )

        def run(on_table: OnTable | None = None) -> dict[str, Any]:
            """The flow's result; a failure becomes the HTTPException to answer with."""
            try:
                return dict(FLOWS[name](table, on_table=on_table))
            except (InputError, ConfigError) as err:
                raise HTTPException(status_code=400, detail=str(err)) from None
            except K2Error as err:
                raise HTTPException(status_code=500, detail=str(err)) from None
            except Exception as err:  # Prefect's own failures (its API server did not start, ...)
                log.exception("flow %s could not run", name)
                detail = f"flow {name} could not run: {type(err).__name__}: {err}"
                raise HTTPException(status_code=500, detail=detail) from None

        table_names(table)  # a bad name is refused (400) before anything starts
        if NDJSON not in request.headers.get("accept", ""):
            return run()

        events: queue.Queue[dict[str, Any] | None] = queue.Queue()

        def stream() -> None:  # in its own thread: `lines` sends what it puts, as it comes
            try:
                result = run(lambda event: events.put(event.to_json()))
                events.put({"event": "result", "result": result})
            except HTTPException as err:
                events.put({"event": "error", "status": err.status_code, "detail": err.detail})
            finally:
                events.put(None)

        def lines() -> Iterator[bytes]:
            while (item := events.get()) is not None:
                yield json.dumps(jsonable_encoder(item)).encode() + b"\n"

        # A client that goes away stops the stream, not the flow: it finishes in its thread.
        threading.Thread(target=stream, name=f"k2-flow-{name}", daemon=True).start()
        return StreamingResponse(lines(), media_type=NDJSON)

    return router
