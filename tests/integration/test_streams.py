"""The API's WebSocket streams: live trades and candle updates as they commit in silver, a slow
client cut off without holding anyone up, and replay of stored trades from both tiers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from k2.api import live
from k2.api.app import create_app
from k2.archive.retention import expire_hot
from k2.embedded import Embedded
from k2.instruments import load_instruments
from k2.query import candle_tiers, frames, tiers
from k2.settings import load_settings
from tests.archive_support import Market
from tests.integration.test_query import DAY_NS, HOUR_NS, RETENTION, SILVER, offload_all

pytestmark = pytest.mark.integration
WS = "ws://127.0.0.1:8000"  # the Host the API answers


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Embedded, Market, TestClient]]:
    emb = Embedded(load_settings(None, data_dir=tmp_path), load_instruments())
    emb.open_store()
    assert emb.store is not None and emb.lake is not None
    api = TestClient(create_app(emb), base_url="http://127.0.0.1:8000")
    try:
        yield emb, Market(emb.store), api
    finally:
        emb.lake.close()
        assert emb._owner is not None
        emb._owner.close()


def receive_until(ws: Any, kind: str, rows: int, timeout: float = 20) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < rows and time.monotonic() < deadline:
        message = ws.receive_json()
        if message["type"] == kind:
            got.extend(message["rows"])
    return got


def test_live_stream_sends_new_trades_and_the_candles_they_change(
    running: tuple[Embedded, Market, TestClient],
) -> None:
    emb, market, api = running
    assert emb.store is not None
    market.write(2, start_ns=time.time_ns() - 600 * 10**9)  # before the client: not "live"
    with api.websocket_connect(WS + "/api/v1/stream/live?venue=binance&timeframe=1m") as ws:
        time.sleep(live.POLL_S * 3)  # the poller has taken its starting marks
        now = time.time_ns() // 60_000_000_000 * 60_000_000_000
        market.write(5, start_ns=now, step_ns=10**9)
        trades = receive_until(ws, "trades", 10)
        stored = tiers.hot_trades(emb.store, tiers.Filter("binance", start_ns=now))
        assert trades == frames.rows(stored)  # binance's two markets, 5 each, nothing older
        # and the candle update equals the stored candle
        candles: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        want = frames.rows(
            candle_tiers.hot_candles(emb.store, "1m", tiers.Filter("binance", start_ns=now))
        )
        while candles[-len(want) :] != want and time.monotonic() < deadline:
            message = ws.receive_json()
            if message["type"] == "candles":
                candles.extend(message["rows"])
        assert candles[-len(want) :] == want
        assert {c["exchange"] for c in candles} == {"binance"}


def test_a_slow_live_client_is_cut_off(
    running: tuple[Embedded, Market, TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its queue full, the client is closed with 1013; the poller and other clients go on."""
    _, market, api = running
    monkeypatch.setattr(live, "QUEUE_MESSAGES", 1)  # trades and candles of one poll overflow it
    with (
        api.websocket_connect(WS + "/api/v1/stream/live?timeframe=1m") as slow,
        api.websocket_connect(WS + "/api/v1/stream/live") as fine,
    ):
        time.sleep(live.POLL_S * 3)
        market.write(3, start_ns=time.time_ns(), step_ns=10**6)
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                slow.receive_json()
        assert closed.value.code == 1013 and "too slow" in closed.value.reason
        assert len(receive_until(fine, "trades", 12)) == 12


def test_stream_mistakes_close_with_the_reason(
    running: tuple[Embedded, Market, TestClient],
) -> None:
    _, _, api = running
    for path, reason in (
        ("/api/v1/stream/live?venue=nope", "unknown venue 'nope'"),
        ("/api/v1/stream/live?timeframe=2m", "unknown timeframe '2m'"),
        ("/api/v1/stream/replay", "from is required"),
        ("/api/v1/stream/replay?from=1h&speed=0", "speed must be a positive number"),
    ):
        with pytest.raises(WebSocketDisconnect) as closed, api.websocket_connect(WS + path) as ws:
            ws.receive_json()
        assert closed.value.code == 1008 and reason in closed.value.reason, closed.value.reason


def test_replay_stream_equals_the_stored_trades_across_tiers_and_is_paced(
    running: tuple[Embedded, Market, TestClient],
) -> None:
    emb, market, api = running
    assert emb.store is not None and emb.lake is not None
    now_hour = time.time_ns() // HOUR_NS * HOUR_NS
    market.write(6, start_ns=now_hour - 4 * DAY_NS, step_ns=HOUR_NS)
    market.write(4, start_ns=now_hour - HOUR_NS, step_ns=10**8)  # 0.1 s apart
    offload_all(emb.store, emb.lake)
    expire_hot(emb.store, emb.lake, RETENTION, tables=SILVER)
    truth = frames.rows(tiers.trades_between(emb.store, emb.lake, tiers.Filter()))

    def replay(query: str) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
        rows: list[dict[str, Any]] = []
        started = time.monotonic()
        with api.websocket_connect(f"{WS}/api/v1/stream/replay?{query}") as ws:
            while (message := ws.receive_json())["type"] == "trades":
                rows.extend(message["rows"])
        return rows, message, time.monotonic() - started

    rows, end, _ = replay("from=5d")
    assert rows == truth and end == {"type": "end", "trades": len(truth)}
    # the last hour's 4 trades per market, 0.1 s apart, at speed 2: about 0.15 s in all
    start = frames.rows(tiers.hot_trades(emb.store, tiers.Filter(start_ns=now_hour - HOUR_NS)))
    rows, _, took = replay(f"from={start[0]['ts_event']}&speed=2&symbol=BTC/USDT")
    assert [Decimal(r["price"]) for r in rows] == [
        Decimal(r["price"]) for r in start if r["canonical_symbol"] == "BTC/USDT"
    ]
    assert 0.14 <= took < 5


def test_streams_want_the_token_when_the_api_has_one(
    running: tuple[Embedded, Market, TestClient],
) -> None:
    """With a token, a stream without it is refused before the upgrade (401); the page itself
    loads, and asks for the token for its data."""
    import dataclasses

    from k2.settings import ApiSettings

    emb, _, _ = running
    token = "t" * 24
    guarded = dataclasses.replace(
        emb, settings=emb.settings.model_copy(update={"api": ApiSettings(token=token)})
    )
    api = TestClient(create_app(guarded), base_url="http://127.0.0.1:8000")
    from starlette.testclient import WebSocketDenialResponse

    for headers in ({}, {"Authorization": "Bearer " + "u" * 24}):
        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            api.websocket_connect(WS + "/api/v1/stream/replay?from=1h", headers=headers),
        ):
            pass
        assert denied.value.status_code == 401
    with api.websocket_connect(
        WS + "/api/v1/stream/replay?from=1h", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        assert ws.receive_json() == {"type": "end", "trades": 0}
    assert api.get("/").status_code == 200 and api.get("/api/v1/trades").status_code == 401
