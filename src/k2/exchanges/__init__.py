"""Venue adapters: one module per venue, registered here by name."""

from __future__ import annotations

from collections.abc import Callable

from k2.errors import ConfigError
from k2.exchanges.base import VenueAdapter
from k2.exchanges.binance import BinanceAdapter
from k2.exchanges.coinbase import CoinbaseAdapter
from k2.exchanges.kraken import KrakenAdapter
from k2.exchanges.limits import DEFAULT_LIMITS, Limits

_REGISTRY: dict[str, Callable[[Limits], VenueAdapter]] = {
    BinanceAdapter.name: BinanceAdapter,
    KrakenAdapter.name: KrakenAdapter,
    CoinbaseAdapter.name: CoinbaseAdapter,
}
VENUE_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def make_adapter(name: str, limits: Limits = DEFAULT_LIMITS) -> VenueAdapter:
    """Return a fresh adapter for the venue called `name`, checking trades against `limits`."""
    try:
        return _REGISTRY[name](limits)
    except KeyError:
        raise ConfigError(
            f"unknown venue {name!r}; known venues: {', '.join(VENUE_NAMES)}"
        ) from None
