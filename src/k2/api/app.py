"""The HTTP API `k2 up` serves on loopback: queries across the hot store, health and metrics.

Other `k2` commands reach the running process through it (chDB allows one process per data
directory).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict
from starlette.middleware.trustedhost import TrustedHostMiddleware
from swagger_ui_bundle import swagger_ui_path

from k2.api import NDJSON
from k2.api.security import allowed_hosts, same_origin_json, token_check
from k2.errors import ConfigError, InputError, K2Error
from k2.hotstore import queries
from k2.hotstore.store import HotStore
from k2.instruments import Instruments, resolve_filters
from k2.observe.health import FAIL, HealthInputs, evaluate, report
from k2.observe.metrics import Source, build_registry, render
from k2.query import frames, stream, tiers
from k2.query.tiers import Archive
from k2.timeutil import user_time

log = logging.getLogger(__name__)


class Context(Source, Protocol):
    """What the API needs from the running process: what the metrics collector reads, and the
    store (None until it is open), the instruments and the health inputs."""

    store: HotStore | None
    instruments: Instruments

    @property
    def lake(self) -> Archive | None:
        """The archive (None until it is open), for reads of what hot no longer holds."""

    def health_inputs(self) -> HealthInputs: ...


def _ns(value: str | None, what: str) -> int | None:
    return None if value is None else user_time(value, what)


class FlowRequest(BaseModel):
    """What to run a flow on."""

    model_config = ConfigDict(extra="forbid")
    tables: list[str] | None = None  # default: every archive table


def create_app(ctx: Context) -> FastAPI:
    api = ctx.settings.api
    app = FastAPI(
        title="K2",
        description="Trades and candles from the K2 hot store; health and metrics.",
        version="1",
        docs_url=None,  # served below with local assets: the page works offline
        redoc_url=None,
        dependencies=[token_check(api.bearer_token())],  # every route but the docs and the schema
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(api), www_redirect=False)
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="K2 API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    app.add_route("/docs", docs, include_in_schema=False)
    registry = build_registry(ctx) if ctx.settings.metrics.enabled else None

    def store() -> HotStore:
        if ctx.store is None:
            raise HTTPException(status_code=503, detail="the hot store is not open yet")
        return ctx.store

    if registry is not None:

        @app.middleware("http")
        async def observe(request: Request, call_next: Any) -> Response:
            started = time.perf_counter()
            response: Response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")  # the route template: bounded label values
            ctx.metrics.api_request(path, response.status_code, time.perf_counter() - started)
            return response

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            """Prometheus text format."""
            return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/health", responses={503: {"description": "A check failed (the body is the same report)"}}
    )
    def health() -> JSONResponse:
        """Every health check with OK/WARN/FAIL; HTTP 503 when one fails."""
        body = report(evaluate(ctx.health_inputs(), ctx.settings.health))
        return JSONResponse(body, status_code=503 if body["status"] == FAIL else 200)

    @app.exception_handler(InputError)
    async def input_error(request: Request, err: InputError) -> JSONResponse:
        """A mistake in the request (a filter, a time, a table name): 400 with the reason."""
        return JSONResponse({"detail": str(err)}, status_code=400)

    def filters(
        venue: str | None, symbol: str | None, start: str | None, end: str | None
    ) -> tuple[str | None, str | None, int | None, int | None]:
        """The common filters, checked like the CLI's: known venue and symbol, storable times."""
        venue, symbol = resolve_filters(ctx.instruments, venue, symbol)
        return venue, symbol, _ns(start, "from"), _ns(end, "to")

    FROM = Query(
        None, alias="from", description="RFC 3339, a date, or a duration ago (15m, 2h, 1d)."
    )
    TO = Query(None, alias="to", description="Up to (not including) this time; same forms as from.")
    LIMIT = Query(100, ge=1, le=tiers.MAX_LIMIT, description="At most this many rows (the latest).")

    @app.get("/api/trades")
    def trades(
        venue: str | None = None,
        symbol: str | None = None,
        start: str | None = FROM,
        end: str | None = TO,
        limit: int = LIMIT,
    ) -> dict[str, Any]:
        """Latest trades matching the filters, oldest first: from the hot store, and from the
        archive for days the hot store no longer holds."""
        f = tiers.Filter(*filters(venue, symbol, start, end))
        return {"rows": frames.rows(tiers.trades(store(), ctx.lake, f, limit))}

    @app.get("/api/candles")
    def candles(
        timeframe: str = "1m",
        venue: str | None = None,
        symbol: str | None = None,
        start: str | None = FROM,
        end: str | None = TO,
        limit: int = LIMIT,
    ) -> dict[str, Any]:
        """Latest candles of one timeframe, oldest first (the current window as it stands); the
        archive serves windows older than the hot store's first."""
        queries.timeframe(timeframe)
        f = tiers.Filter(*filters(venue, symbol, start, end))
        return {"rows": frames.rows(tiers.candles(store(), ctx.lake, timeframe, f, limit))}

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

    @app.get("/api/export/trades", response_class=StreamingResponse, responses=EXPORT)
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

    @app.get("/api/export/candles", response_class=StreamingResponse, responses=EXPORT)
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

    @app.get("/api/gaps")
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

    @app.get("/api/rejects")
    def rejects(
        venue: str | None = None, start: str | None = FROM, end: str | None = TO, limit: int = LIMIT
    ) -> dict[str, Any]:
        """Latest quarantined (rejected) messages with the reason, oldest first."""
        venue, _, start_ns, end_ns = filters(venue, None, start, end)
        return {"rows": queries.rejects(store(), venue, start_ns, end_ns, limit)}

    @app.get("/api/symbols")
    def symbols() -> dict[str, Any]:
        """Every instrument: venue, venue symbol, canonical symbol, trades stored,
        first and last trade."""
        return {"rows": queries.symbols(store(), ctx.instruments)}

    @app.post(
        "/api/flows/{name}",
        dependencies=[Depends(same_origin_json)],
        response_model=None,
        responses={200: {"content": {NDJSON: {}}}},
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

    return app
