"""The REST gate: every venue request goes through it, within the venue's published limits."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

import httpx

from k2.errors import RateLimited, VenueRejected, VenueRequestError
from k2.exchanges.base import RestPolicy
from k2.ingest.stats import FeedStats

log = logging.getLogger(__name__)


def retry_after_seconds(value: str | None, default: float = 1.0) -> float:
    """Return the wait a Retry-After header asks for (seconds form; HTTP dates fall back)."""
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


class RestGate:
    """Token bucket + request-weight budget + Retry-After, then typed errors for the caller.

    Rate limits (429/418) are retried here after the wait the venue asked for, up to
    `max_rate_limit_retries` times; other failures raise at once for the caller to retry.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        policy: RestPolicy,
        stats: FeedStats,
        timeout: float = 10.0,
        max_rate_limit_retries: int = 8,
    ) -> None:
        self._client = client
        self._base = base_url.rstrip("/")
        self._policy = policy
        self._stats = stats
        self._timeout = timeout
        self._retries = max_rate_limit_retries
        self._tokens = float(policy.burst)
        self._refilled = time.monotonic()
        self._blocked_until = 0.0
        self._weight_used = 0
        self._weight_minute = 0
        self._lock = asyncio.Lock()

    def block(self, seconds: float) -> None:
        """Hold every request for `seconds` (the venue said to back off)."""
        self._blocked_until = max(self._blocked_until, time.monotonic() + seconds)

    async def _acquire(self, weight: int) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._blocked_until:
                    await asyncio.sleep(self._blocked_until - now)
                    continue
                rate = self._policy.requests_per_second
                self._tokens = min(self._policy.burst, self._tokens + (now - self._refilled) * rate)
                self._refilled = now
                budget = self._policy.weight_per_minute
                minute = int(time.time() // 60)
                if minute != self._weight_minute:
                    self._weight_minute, self._weight_used = minute, 0
                if budget and self._weight_used + weight > budget * 0.9:
                    # the window resets each minute
                    await asyncio.sleep(60 - time.time() % 60 + 0.05)
                    continue
                if self._tokens >= 1:
                    self._tokens -= 1
                    self._weight_used += weight
                    return
                await asyncio.sleep((1 - self._tokens) / rate)

    async def __call__(
        self,
        path: str,
        params: Mapping[str, str | int] | Sequence[tuple[str, str | int]] | None = None,
        *,
        weight: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        for _ in range(self._retries + 1):
            await self._acquire(weight)
            try:
                return await self._once(path, params, headers)
            except RateLimited as err:
                self.block(err.retry_after)
                log.warning(
                    "%s: rate limited on %s, waiting %.1f s",
                    self._stats.venue,
                    path,
                    err.retry_after,
                )
        raise VenueRequestError(
            f"{self._stats.venue}: still rate limited after {self._retries} retries: {path}"
        )

    async def _once(self, path: str, params, headers) -> bytes:  # type: ignore[no-untyped-def]
        self._stats.rest_requests += 1
        try:
            resp = await self._client.get(
                self._base + path, params=params, headers=headers, timeout=self._timeout
            )
        except httpx.HTTPError as err:
            self._stats.rest_errors += 1
            raise VenueRequestError(f"{self._stats.venue}: GET {path} failed: {err!r}") from None
        header = self._policy.used_weight_header
        if header and header in resp.headers:
            try:
                self._weight_used = max(self._weight_used, int(resp.headers[header]))
            except ValueError:
                pass
        status = resp.status_code
        if status in (418, 429):
            self._stats.rest_rate_limited += 1
            raise RateLimited(
                f"{self._stats.venue}: HTTP {status}",
                retry_after_seconds(resp.headers.get("retry-after")),
            )
        if status >= 500:
            self._stats.rest_errors += 1
            raise VenueRequestError(f"{self._stats.venue}: GET {path}: HTTP {status}")
        if status >= 400:
            self._stats.rest_errors += 1
            raise VenueRejected(
                f"{self._stats.venue}: GET {path}: HTTP {status}: {resp.text[:300]}"
            )
        return resp.content
