"""The HTTP API `k2 up` serves on loopback: queries across the hot store, health and metrics.

Other `k2` commands reach the running process through it (chDB allows one process per data
directory).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from k2.errors import ConfigError, K2Error, ParseError
from k2.hotstore import queries
from k2.hotstore.store import HotStore
from k2.observe.health import FAIL, HealthInputs, evaluate, report
from k2.observe.metrics import PipelineMetrics, build_registry, render
from k2.settings import Settings
from k2.timeutil import rfc3339_to_ns

log = logging.getLogger(__name__)


class Context(Protocol):
    """What the API needs from the running process (also the metrics collector's `Source`)."""

    store: HotStore
    settings: Settings
    metrics: PipelineMetrics

    def health_inputs(self) -> HealthInputs: ...


def _ns(value: str | None) -> int | None:
    return None if value is None else rfc3339_to_ns(value)


def create_app(ctx: Context) -> FastAPI:
    app = FastAPI(title="K2", description="Trades and candles from the K2 hot store; health and metrics.",
                  version="1")  # fmt: skip
    registry = build_registry(ctx) if ctx.settings.metrics.enabled else None  # type: ignore[arg-type]

    if registry is not None:

        @app.middleware("http")
        async def observe(request: Request, call_next: Any) -> Response:
            started = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")  # the route template: bounded label values
            ctx.metrics.api_request(path, response.status_code, time.perf_counter() - started)
            return response

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            """Prometheus text format."""
            return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    def health() -> JSONResponse:
        """Every health check with OK/WARN/FAIL; HTTP 503 when one fails."""
        body = report(evaluate(ctx.health_inputs(), ctx.settings.health))
        return JSONResponse(body, status_code=503 if body["status"] == FAIL else 200)

    def guarded(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, ParseError) as err:
            raise HTTPException(status_code=400, detail=str(err)) from None

    @app.get("/api/trades")
    def trades(venue: str | None = None, symbol: str | None = None, start: str | None = Query(None, alias="from"),
               end: str | None = Query(None, alias="to"), limit: int = 100) -> dict[str, Any]:  # fmt: skip
        """Latest trades matching the filters (times are RFC 3339), oldest first."""
        rows = guarded(queries.trades, ctx.store, venue, symbol, guarded(_ns, start), guarded(_ns, end), limit)
        return {"rows": rows}

    @app.get("/api/candles")
    def candles(timeframe: str = "1m", venue: str | None = None, symbol: str | None = None,
                start: str | None = Query(None, alias="from"), end: str | None = Query(None, alias="to"),
                limit: int = 100) -> dict[str, Any]:  # fmt: skip
        """Latest candles of one timeframe, oldest first (the current window as it stands)."""
        rows = guarded(queries.candles, ctx.store, timeframe, venue, symbol, guarded(_ns, start), guarded(_ns, end), limit)
        return {"rows": rows}

    @app.get("/api/gaps")
    def gaps(venue: str | None = None, outcome: str | None = None, start: str | None = Query(None, alias="from"),
             end: str | None = Query(None, alias="to"), limit: int = 100) -> dict[str, Any]:  # fmt: skip
        """Latest detected gaps with their repair outcome, oldest first."""
        rows = guarded(queries.gaps, ctx.store, venue, outcome, guarded(_ns, start), guarded(_ns, end), limit)
        return {"rows": rows}

    @app.get("/api/rejects")
    def rejects(venue: str | None = None, start: str | None = Query(None, alias="from"),
                end: str | None = Query(None, alias="to"), limit: int = 100) -> dict[str, Any]:  # fmt: skip
        """Latest quarantined (rejected) messages with the reason, oldest first."""
        rows = guarded(queries.rejects, ctx.store, venue, guarded(_ns, start), guarded(_ns, end), limit)
        return {"rows": rows}

    @app.post("/api/flows/{name}")
    def run_flow(name: str, table: list[str] | None = Query(None)) -> dict[str, Any]:
        """Run an archive flow now, in this process (offload, maintenance or reconcile)."""
        from k2.flows import FLOWS

        if name not in FLOWS:
            raise HTTPException(status_code=404, detail=f"no flow {name!r}; flows: {', '.join(FLOWS)}")
        try:
            return FLOWS[name](table)
        except ConfigError as err:
            raise HTTPException(status_code=400, detail=str(err)) from None
        except K2Error as err:
            raise HTTPException(status_code=500, detail=str(err)) from None
        except Exception as err:  # Prefect's own failures (its API server did not start, ...)
            log.exception("flow %s could not run", name)
            raise HTTPException(status_code=500, detail=f"flow {name} could not run: {type(err).__name__}: {err}") from None

    return app
