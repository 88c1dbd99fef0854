"""The HTTP API `k2 up` serves on loopback: queries across the hot store, health and metrics.

Other `k2` commands reach the running process through it (chDB allows one process per data
directory).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from swagger_ui_bundle import swagger_ui_path

from k2.api import page, problems
from k2.api.context import Context
from k2.api.routes import data_routes
from k2.api.security import HostCheck, allowed_hosts, token_check
from k2.api.streams import stream_routes
from k2.hotstore.store import HotStore
from k2.observe.health import FAIL, evaluate, report
from k2.observe.metrics import build_registry, render

log = logging.getLogger(__name__)


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
    app.add_middleware(HostCheck, allowed_hosts=allowed_hosts(api))
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
        "/health",
        responses={
            503: {"description": "A check failed (the body is the same report)"},
            400: problems.answer("A Host header that is not a name of this API"),
            401: problems.answer("The API wants a bearer token"),
        },
    )
    def health() -> JSONResponse:
        """Every health check with OK/WARN/FAIL; HTTP 503 when one fails."""
        body = report(evaluate(ctx.health_inputs(), ctx.settings.health))
        return JSONResponse(body, status_code=503 if body["status"] == FAIL else 200)

    problems.install(app)
    page.install(app)
    router = data_routes(ctx, store)
    router.include_router(stream_routes(ctx, store))
    router.include_router(page.status_routes(ctx, store))
    app.include_router(router, prefix="/api/v1")
    # The paths before v1, kept for clients of earlier releases; not in the schema.
    app.include_router(router, prefix="/api", include_in_schema=False)
    return app
