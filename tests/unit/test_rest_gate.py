import asyncio
import time

import httpx
import pytest

from k2.errors import VenueRejected, VenueRequestError
from k2.exchanges.base import RestPolicy
from k2.ingest.rest import RestGate, retry_after_seconds
from k2.ingest.stats import FeedStats


def gate(handler, policy: RestPolicy | None = None) -> tuple[RestGate, FeedStats]:  # type: ignore[no-untyped-def]
    stats = FeedStats("test")
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return RestGate(
        client, "http://venue", policy or RestPolicy(requests_per_second=100, burst=10), stats
    ), stats


def test_429_waits_for_retry_after_then_succeeds() -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0.6"})
        return httpx.Response(200, content=b"ok")

    g, stats = gate(handler)
    assert asyncio.run(g("/x")) == b"ok"
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.6
    assert stats.rest_rate_limited == 1 and stats.rest_requests == 2


def test_errors_are_typed() -> None:
    g, stats = gate(
        lambda r: httpx.Response(400, content=b'{"code":-1121,"msg":"Invalid symbol."}')
    )
    with pytest.raises(VenueRejected, match="Invalid symbol"):
        asyncio.run(g("/x"))
    g, _ = gate(lambda r: httpx.Response(503))
    with pytest.raises(VenueRequestError, match="503"):
        asyncio.run(g("/x"))

    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    g, stats = gate(broken)
    with pytest.raises(VenueRequestError):
        asyncio.run(g("/x"))
    assert stats.rest_errors == 1


def test_request_rate_is_limited() -> None:
    g, _ = gate(lambda r: httpx.Response(200), RestPolicy(requests_per_second=20, burst=1))

    async def many() -> float:
        start = time.monotonic()
        for _ in range(6):
            await g("/x")
        return time.monotonic() - start

    assert asyncio.run(many()) >= 5 / 20 * 0.9


def test_weight_budget_follows_the_venue_header() -> None:
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params.get("n"))
        return httpx.Response(200, headers={"x-used": "5000"})

    g, _ = gate(
        handler,
        RestPolicy(
            requests_per_second=100, burst=10, weight_per_minute=6000, used_weight_header="x-used"
        ),
    )
    asyncio.run(g("/x", {"n": 1}, weight=25))
    assert g._weight_used == 5000  # the venue's own count wins over ours
    assert retry_after_seconds("2.5") == 2.5 and retry_after_seconds(None) == 1.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 1.0
