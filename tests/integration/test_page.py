"""The web page at /, in a real headless Chromium (Debian's, driven by Playwright): it loads with no
console errors, its chart shows the stored candles and follows new ones live, and its tables say
what the API says. The test saves screenshots (their paths are printed)."""

from __future__ import annotations

import asyncio
import calendar
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from k2.api.app import create_app
from k2.archive import ops
from k2.archive.offload import offload_table
from k2.archive.reconcile import reconcile_table
from k2.archive.tables import BY_NAME, TABLES
from k2.embedded import Embedded
from k2.instruments import load_instruments
from k2.records import Reject
from k2.settings import load_settings
from tests.archive_support import Market

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = Path(__file__).parents[2] / "build" / "screenshots"
MINUTE_NS = 60 * 10**9


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Embedded, Market]]:
    """A store with trades, a gap, a reject and an archive, its API served on loopback."""
    emb = Embedded(load_settings(None, data_dir=tmp_path), load_instruments())
    emb.open_store()
    assert emb.store is not None and emb.lake is not None and emb.archive is not None
    store, lake = emb.store, emb.lake
    market = Market(store)
    start = (time.time_ns() // MINUTE_NS - 90) * MINUTE_NS
    market.write(120, start_ns=start, step_ns=40 * 10**9)  # 80 minutes of 1m candles per market
    store.execute(
        "INSERT INTO k2.feed_gaps (gap_id, exchange, symbol, kind, first_id, last_id, ts_from, "
        "ts_to, detected_at, resolved_at, outcome, missing, recovered, version) VALUES "
        "('g1', 'kraken', 'BTC/USD', 'ids', 1500, 1502, now64(9), now64(9), now64(9), now64(9), "
        "'repaired', 3, 3, 1)"
    )
    reject = Reject(
        "coinbase", "not a trade: <script>alert(1)</script>", b"{}", time.time_ns(), "c-1"
    )

    async def quarantine() -> None:
        await market.writer.reject(reject)
        await market.writer.flush()

    asyncio.run(quarantine())
    for spec in TABLES:  # offload through the same calls as the flow, recorded as it records them
        started = time.time()
        result = offload_table(store, lake, spec, chunk_rows=100_000, lookback_minutes=180)
        ops.record_offload(store, result, spec.name, started, "ok")
    ops.record_reconcile(store, reconcile_table(store, lake, BY_NAME["silver_trades"], 30))
    ops.load_status(store, emb.archive.status, TABLES)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(emb), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield url, emb, market
    finally:
        server.should_exit = True
        thread.join(10)
        lake.close()
        assert emb._owner is not None
        emb._owner.close()


def cells(page: Any, table: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"#{table} tr:not(:first-child)",
        "rows => rows.map(r => [...r.children].map(td => td.textContent))",
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make tools)")
def test_page_shows_the_store_and_follows_it_live(served: tuple[str, Embedded, Market]) -> None:
    from playwright.sync_api import sync_playwright

    url, _, market = served
    api = httpx.Client(base_url=url)
    problems: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        started = time.monotonic()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]", timeout=15_000)
        first_load = time.monotonic() - started
        assert not problems, problems

        # The chart: the market with most trades, its stored 1m candles.
        venue, symbol = page.eval_on_selector("#market", "s => s.value").split("|")
        stored = api.get(
            "/api/v1/candles",
            params={"venue": venue, "symbol": symbol, "timeframe": "1m", "limit": 300},
        ).json()["rows"]
        assert page.evaluate("() => window.k2.candles") == stored and len(stored) >= 80
        drawn = page.evaluate(
            "() => Object.fromEntries(['t', 'close', 'high', 'low', 'open'].map("
            "k => [k, Array.from(window.k2chart.source.data[k])]))"
        )
        assert drawn["close"] == [float(c["close"]) for c in stored]
        assert drawn["high"] == [float(c["high"]) for c in stored]
        first = calendar.timegm(time.strptime(stored[0]["window_start"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert drawn["t"][0] == first * 1000
        assert page.locator("#chart .bk-Figure, #chart div").count() > 0

        # The tables say what the API says.
        gaps = api.get("/api/v1/gaps", params={"limit": 20}).json()["rows"]
        assert [r[:3] for r in cells(page, "gaps")] == [
            [g["exchange"], g["symbol"], g["kind"]] for g in reversed(gaps)
        ]
        rejects = api.get("/api/v1/rejects", params={"limit": 20}).json()["rows"]
        assert cells(page, "rejects") == [
            [r["exchange"], r["ts_recv"], r["reason"], r["raw"]] for r in reversed(rejects)
        ]  # venue text shown as text, never run: no alert, no console error
        feeds = api.get("/api/v1/feeds").json()["rows"]
        assert [r[:4] for r in cells(page, "feeds")] == [
            [f["exchange"], f["symbol"], f["canonical_symbol"], f["state"]] for f in feeds
        ]
        archive = api.get("/api/v1/archive").json()["tables"]
        assert [r[:3] for r in cells(page, "archive")] == [
            [t["table"], "" if t["watermark"] is None else str(t["watermark"]), t["newest_event"]]
            for t in archive
        ]
        assert all(t["last_offload"] for t in archive)
        health = api.get("/api/v1/health").json()
        assert [r[0] for r in cells(page, "checks")] == [c["name"] for c in health["checks"]]
        page.screenshot(path=str(SCREENSHOTS / "page.png"), full_page=True)

        # Live: trades in a new minute reach the chart over the stream, without a reload.
        page.wait_for_function("() => document.getElementById('live').textContent === 'live'")
        now = time.time_ns() // MINUTE_NS * MINUTE_NS
        # (on a thread of its own: Playwright's sync API keeps an event loop on this one)
        writing = threading.Thread(target=market.write, args=(3, now + 10**9, 10**9))
        writing.start()
        writing.join()
        page.wait_for_function(
            f"() => Array.from(window.k2chart.source.data.t).includes({now // 10**6})",
            timeout=15_000,
        )
        page.screenshot(path=str(SCREENSHOTS / "page-live.png"))
        assert not problems, problems
        browser.close()
    print(f"first load {first_load:.2f} s; screenshots: {SCREENSHOTS}/page.png, page-live.png")
    assert first_load < 5
