"""What every venue adapter declares and provides. Generic code talks to venues only through this."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, TypeVar

import msgspec

from k2.errors import ParseError
from k2.records import Trade

# What decoding untrusted JSON can raise; adapters turn each into a ParseError.
DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError)
T = TypeVar("T")


class Signal(enum.Enum):
    """A non-trade message the session cares about."""

    HEARTBEAT = "heartbeat"  # venue keep-alive (also any pong)
    SUBSCRIBED = "subscribed"  # the venue acknowledged a subscription
    SHUTDOWN = "shutdown"  # the venue is about to close this connection: rotate now
    ERROR = "error"  # the venue reported an error (detail says what)
    INFO = "info"  # anything else that is known and harmless (status messages)


class Parsed(msgspec.Struct, frozen=True, gc=False):
    """What one WebSocket message contained (a Struct: built once per message on the hot path)."""

    trades: Sequence[Trade] = ()
    signal: Signal | None = None
    detail: str = ""
    # Per-connection message sequence number where the venue sends one: a jump means the venue
    # dropped messages on this connection (the session repairs by time window).
    sequence: int | None = None
    # Trades of a multi-trade message that failed validation; their neighbours still count.
    rejected: tuple[ParseError, ...] = ()


def as_parsed(result: Parsed | Trade) -> Parsed:
    """What `parse` returned, as a Parsed (a message that was exactly one trade comes back bare)."""
    return Parsed((result,)) if type(result) is Trade else result  # type: ignore[return-value]


NOTHING = Parsed()
HEARTBEAT = Parsed(signal=Signal.HEARTBEAT)
SUBSCRIBED = Parsed(signal=Signal.SUBSCRIBED)
INFO = Parsed(signal=Signal.INFO)


@dataclass(frozen=True, slots=True)
class RestPolicy:
    """A venue's published REST limits, which the generic REST gate enforces."""

    requests_per_second: float
    burst: int = 1
    weight_per_minute: int | None = None  # request-weight budget, where the venue has one
    used_weight_header: str | None = None  # response header reporting weight used this minute


@dataclass(frozen=True, slots=True)
class Listing:
    """What the venue lists: venue symbol -> canonical symbol, and symbols not trading now."""

    symbols: Mapping[str, str]
    not_trading: Mapping[str, str] = field(default_factory=dict)  # symbol -> venue status


class Fetch(Protocol):
    """GET `path` on the venue's REST base URL and return the body (the gate handles limits)."""

    def __call__(
        self,
        path: str,
        params: Mapping[str, str | int] | Sequence[tuple[str, str | int]] | None = None,
        *,
        weight: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> Awaitable[bytes]: ...


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """Trades to fetch over REST for one symbol.

    For venues with contiguous ids: ids `first_id..last_id`; `ts_from` is the event time of the
    trade just before the hole (a time anchor for venues that page by time). For the others: the
    time window `ts_from..ts_to` (UTC ns).
    """

    symbol: str
    first_id: int
    last_id: int
    ts_from: int
    ts_to: int


@dataclass(frozen=True, slots=True)
class Backfill:
    """Trades a venue returned for a BackfillRequest; `complete` is False when the venue's paging
    could not cover the whole request (the gap is then recorded as partly repaired)."""

    trades: list[Trade]
    complete: bool = True


class VenueAdapter(Protocol):
    """Venue knowledge, and nothing else: no sockets, no state beyond the symbol map."""

    name: str
    docs_url: str
    default_ws_url: str
    default_rest_url: str
    contiguous_ids: bool  # an id jump is a gap (else: dedupe by id, repair by time window)
    heartbeat_timeout_s: float | None  # venue sends app heartbeats: silence longer than this is dead
    max_connection_age_s: float | None  # the venue cuts connections at this age
    rest_policy: RestPolicy

    def ws_url(self, base_url: str, symbols: Sequence[str]) -> str: ...

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]: ...

    def parse(self, raw: bytes, recv_ns: int) -> Parsed | Trade:
        """What a message held; a message that is exactly one valid trade may come back as that
        Trade itself (venues that send a trade per message: no Parsed to build and unpack)."""
        ...

    def canonical(self, symbol: str) -> str: ...

    def use_listing(self, listing: Listing) -> None: ...

    async def fetch_listing(self, fetch: Fetch, symbols: Sequence[str]) -> Listing: ...

    async def backfill(
        self, fetch: Fetch, request: BackfillRequest, recv_ns: Callable[[], int]
    ) -> Backfill: ...


def positive_decimal(value: Decimal, what: str, raw: bytes) -> Decimal:
    """Return `value` if it is a finite number > 0, else raise ParseError."""
    # Predicates, not `value > 0`: comparing with an int is several times slower. is_normal():
    # finite and non-zero.
    if not value.is_normal() or value.is_signed():
        raise ParseError(f"{what} must be a positive finite number, got {value}", raw)
    return value


def parse_trade_id(text: str | int, raw: bytes) -> int:
    """Return a trade id as a non-negative integer, from an int or a string of digits."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ParseError(f"negative trade id {text}", raw)
        return text
    if isinstance(text, str) and text.isascii() and text.isdigit():
        return int(text)
    raise ParseError(f"trade id must be a non-negative integer, got {text!r}", raw)


class DecimalCache(dict[str, Decimal]):
    """Exact decimal text -> Decimal, interned. Trades repeat price levels, and `Decimal(text)`
    is the largest single cost of parsing; the key is the exact text, so "1.10" and "1.1" stay
    distinct. Cleared when full, so memory stays bounded."""

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__()
        self.capacity = capacity

    def __missing__(self, text: str) -> Decimal:
        """Parse, validate (finite and > 0) and remember `text`; raise ParseError if invalid."""
        try:
            value = Decimal(text)
        except ArithmeticError:
            raise ParseError(f"not a decimal number: {text!r}", text) from None
        if not value.is_normal() or value.is_signed():
            raise ParseError(f"must be a positive finite number, got {text!r}", text)
        if len(self) >= self.capacity:
            self.clear()
        self[text] = value
        return value


ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def canonical_pair(base: str, quote: str) -> str:
    """Return `BASE/QUOTE` in upper case with legacy asset codes mapped (XBT -> BTC, XDG -> DOGE)."""
    base, quote = base.upper(), quote.upper()
    return f"{ALIASES.get(base, base)}/{ALIASES.get(quote, quote)}"


class SymbolNames:
    """Venue symbol -> canonical BASE/QUOTE: the venue's listing once read, else the venue's own rule.

    Adapters inherit `canonical`, `names` and `use_listing` from here and define `split_symbol`.
    """

    def __init__(self) -> None:
        self._canonical: dict[str, str] = {}
        self._names: dict[str, tuple[str, str]] = {}

    @staticmethod
    def split_symbol(symbol: str) -> str:
        raise NotImplementedError

    def canonical(self, symbol: str) -> str:
        found = self._canonical.get(symbol)
        if found is None:
            found = self._canonical[symbol] = self.split_symbol(symbol)
        return found

    def names(self, symbol: str) -> tuple[str, str]:
        """Return (symbol, canonical symbol), one shared pair of strings per symbol.

        A JSON decoder makes a new string for every trade's symbol; a trade keeps this pair's
        instead, so a hundred thousand trades waiting to be written hold no copies of it.
        """
        found = self._names.get(symbol)
        if found is None:
            found = self._names[symbol] = (symbol, self.canonical(symbol))
        return found

    def use_listing(self, listing: Listing) -> None:
        self._canonical.update(listing.symbols)
        self._names.clear()


def collect_trades(items: Iterable[T], make: Callable[[T], Trade], trades: list[Trade],
                   rejected: list[ParseError]) -> None:  # fmt: skip
    """Normalize each trade of a multi-trade message: valid ones to `trades`, bad ones to `rejected`."""
    for item in items:
        try:
            trades.append(make(item))
        except ParseError as err:
            rejected.append(err)
