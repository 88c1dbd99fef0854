"""The web page the API serves at `/`, and the two views only it needs: feeds per market and the
archive's state.

The page (page/index.html, page/app.js) is static; it reads the same /api/v1 routes as everyone
else and draws candles with BokehJS, which ships inside the bokeh wheel and is served from here, so
the page works offline. (plotly.js, in the plotly wheel, was tried first: its 4.8 MB took a second
to parse in headless Chromium here; BokehJS is 1.4 MB.) Both views read the store (and the
process's own state where it has feeds), so they answer the same in `k2 up` and in `k2 api`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from k2.api import problems
from k2.hotstore.schema import DATABASE, SILVER_TABLE
from k2.hotstore.store import HotStore
from k2.instruments import catalog
from k2.observe.health import evaluate, report

if TYPE_CHECKING:
    from k2.api.context import Context

PAGE = Path(str(resources.files("k2.api").joinpath("page")))
FEED_KEYS = (
    "exchange",
    "symbol",
    "canonical_symbol",
    "state",
    "trades_last_minute",
    "last_trade_age_s",
    "gaps",
    "gaps_repaired",
)


def bokeh_js() -> Path:
    """BokehJS's directory, as the bokeh package installed it."""
    return Path(str(resources.files("bokeh").joinpath("server", "static", "js")))


def install(app: FastAPI) -> None:
    """Serve the page at / and its assets (outside the token check: the page asks for a token
    itself when the API wants one)."""

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse((PAGE / "index.html").read_text(encoding="utf-8"))

    app.add_route("/", index, include_in_schema=False)
    app.mount("/assets/bokeh", StaticFiles(directory=bokeh_js()), name="bokeh-assets")
    app.mount("/assets/page", StaticFiles(directory=PAGE), name="page-assets")


def status_routes(ctx: Context, store: Callable[[], HotStore]) -> APIRouter:
    router = APIRouter(responses=problems.RESPONSES)

    def states() -> dict[str, str]:
        """Each venue's connection state: the process's own feeds, or the health rows built
        from the feed processes' heartbeats (the cluster shape)."""
        inputs = ctx.health_inputs()
        if inputs.feeds:
            return {s.venue: str(s.state) for s, _ in inputs.feeds}
        out = {}
        for check in evaluate(inputs, ctx.settings.health):
            if check.name.startswith("feed "):
                out[check.name.removeprefix("feed ")] = check.detail.split(",")[0]
        return out

    @router.get("/feeds")
    def feeds() -> dict[str, Any]:
        """Per market: its venue's connection state, trades received in the last minute, the
        age of its newest trade (null: none in the last 10 minutes), gaps found and repaired."""
        recent = {
            (str(e), str(s)): (int(newest), int(n))
            for e, s, newest, n in store().rows(
                "SELECT exchange, symbol, toUnixTimestamp64Nano(max(ts_recv)), "
                "countIf(ts_recv > now64(9) - INTERVAL 60 SECOND) "
                f"FROM {DATABASE}.{SILVER_TABLE} "
                "WHERE ts_event > now64(9) - INTERVAL 10 MINUTE GROUP BY 1, 2"
            )
        }
        gaps = {
            (str(e), str(s)): (int(n), int(r))
            for e, s, n, r in store().rows(
                "SELECT exchange, symbol, count(), countIf(outcome = 'repaired') "
                f"FROM {DATABASE}.feed_gaps FINAL GROUP BY 1, 2"
            )
        }
        state = states()
        now = time.time_ns()
        rows = []
        for item in catalog(ctx.instruments):
            newest, n = recent.get((item.venue, item.symbol), (0, 0))
            found, repaired = gaps.get((item.venue, item.symbol), (0, 0))
            age = round((now - newest) / 1e9, 1) if newest else None
            values = (item.venue, item.symbol, item.canonical, state.get(item.venue, "unknown"))
            rows.append(dict(zip(FEED_KEYS, (*values, n, age, found, repaired), strict=True)))
        return {"rows": rows}

    @router.get("/health")
    def health_report() -> dict[str, Any]:
        """The health report of /health, always with HTTP 200 (/health answers 503 when a
        check fails, for load balancers and probes; this is for reading it)."""
        return report(evaluate(ctx.health_inputs(), ctx.settings.health))

    @router.get("/archive")
    def archive() -> dict[str, Any]:
        """The archive as this process last saw it: per table the watermark, the newest event
        archived, the last successful offload and the last error; the last maintenance and
        reconcile runs, with the days reconcile found different."""
        status = ctx.health_inputs().archive
        tables = [
            {
                "table": name,
                "watermark": t.watermark,
                "newest_event": _iso(t.newest_event_ns / 1e9),
                "last_offload": _iso(t.last_success),
                "consecutive_failures": t.consecutive_failures,
                "last_error": t.last_error,
            }
            for name, t in sorted(status.tables.items())
        ]
        differing = [
            {"table": c.table, "day": c.day, "hot_rows": c.hot_rows, "archive_rows": c.archive_rows}
            for checks in status.reconcile.values()
            for c in checks
            if not c.ok
        ]
        return {
            "tables": tables,
            "maintenance_at": _iso(status.maintenance_at),
            "maintenance_ok": status.maintenance_ok,
            "reconcile_at": _iso(status.reconcile_at),
            "reconcile_days_checked": sum(len(v) for v in status.reconcile.values()),
            "reconcile_differing": differing,
        }

    return router


def _iso(epoch_s: float) -> str:
    if not epoch_s:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))
