"""What every venue adapter declares and provides. Generic code talks to venues
only through this."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, TypeVar

import msgspec

from k2.errors import ParseError
from k2.exchanges.limits import DEFAULT_LIMITS, Limits, decimal_problem, trade_problem
from k2.records import Trade

# What decoding untrusted JSON can raise; adapters turn each into a ParseError. (msgspec raises
# RecursionError for nesting deeper than about a thousand levels.)
DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError, RecursionError)
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
    rejected: list[ParseError] = field(default_factory=list)  # REST rows that failed validation


class VenueAdapter(Protocol):
    """Venue knowledge, and nothing else: no sockets. The state an adapter keeps is what parsing
    needs: the symbol map, the limits trades are checked against, caches (Binance's prices) and
    what the listing taught it (Kraken's REST pair names)."""

    name: str
    docs_url: str
    default_ws_url: str
    default_rest_url: str
    contiguous_ids: bool  # an id jump is a gap (else: dedupe by id, repair by time window)
    # An id more than this far above the highest seen is suspect (a corrupt frame, or a stream that
    # moved on while K2 was away): about a day of the venue's busiest symbol. Never fetched blindly.
    max_id_jump: int
    # venue sends app heartbeats: silence longer than this is dead
    heartbeat_timeout_s: float | None
    max_connection_age_s: float | None  # the venue cuts connections at this age
    rest_policy: RestPolicy
    limits: Limits

    def ws_url(self, base_url: str, symbols: Sequence[str]) -> str: ...

    def subscribe_messages(self, symbols: Sequence[str]) -> list[str]: ...

    def parse(self, raw: bytes, recv_ns: int) -> Parsed | Trade:
        """What a message held; a message that is exactly one valid trade may come back as that
        Trade itself (venues that send a trade per message: no Parsed to build and unpack)."""
        ...

    def canonical(self, symbol: str) -> str: ...

    def expect(self, symbols: Iterable[str]) -> None: ...

    def use_listing(self, listing: Listing) -> None: ...

    async def fetch_listing(self, fetch: Fetch, symbols: Sequence[str]) -> Listing: ...

    async def backfill(
        self, fetch: Fetch, request: BackfillRequest, recv_ns: Callable[[], int]
    ) -> Backfill: ...


def parse_trade_id(text: str | int, raw: bytes) -> int:
    """Return a trade id from an int or a string of digits (limits.trade_problem
    checks its range)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, str) and len(text) <= 40 and text.isascii() and text.isdigit():
        return int(text)  # the length is bounded: int() refuses strings of over 4,300 digits
    raise ParseError(f"trade id must be a non-negative integer, got {text!r}", raw)


def checked(trade: Trade, limits: Limits, price_checked: bool = False) -> Trade:
    """Return `trade` if the stores can hold it exactly, else raise ParseError with its raw JSON."""
    problem = trade_problem(trade, limits, price_checked)
    if problem is not None:
        raise ParseError(problem, trade.raw)
    return trade


class DecimalCache(dict[str | bytes, Decimal]):
    """Exact decimal text -> Decimal, interned. Trades repeat price levels, and `Decimal(text)`
    is the largest single cost of parsing; the key is the exact text, so "1.10" and "1.1" stay
    distinct. The text is a str (a JSON string's content) or bytes (a JSON number as sent). Only
    valid values (limits.decimal_problem) are admitted. Cleared when full, so memory stays
    bounded."""

    def __init__(self, capacity: int = 100_000) -> None:
        super().__init__()
        self.capacity = capacity

    def __missing__(self, text: str | bytes) -> Decimal:
        """Parse, validate and remember `text`; raise ParseError if it is not a valid amount."""
        try:
            value = Decimal(text.decode("ascii") if isinstance(text, bytes) else text)
        except (ArithmeticError, UnicodeDecodeError):
            raise ParseError(f"not a decimal number: {text!r}", text) from None
        problem = decimal_problem(value)
        if problem is not None:
            raise ParseError(problem, text)
        if len(self) >= self.capacity:
            self.clear()
        self[text] = value
        return value


ALIASES = {"XBT": "BTC", "XDG": "DOGE"}


def canonical_pair(base: str, quote: str) -> str:
    """Return `BASE/QUOTE` in upper case with legacy asset codes mapped (XBT -> BTC,
    XDG -> DOGE)."""
    base, quote = base.upper(), quote.upper()
    return f"{ALIASES.get(base, base)}/{ALIASES.get(quote, quote)}"


class SymbolNames:
    """Venue symbol -> canonical BASE/QUOTE: the venue's listing once read, else the venue's own
    rule.

    Adapters inherit `canonical`, `names`, `expect` and `use_listing` from here, define
    `split_symbol`, and keep the `limits` their trades are checked against. Once `expect(symbols)`
    names the symbols K2 subscribed to, a trade of any other symbol is a reject.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._known: frozenset[str] | None = None
        self._canonical: dict[str, str] = {}
        self._names: dict[str, tuple[str, str]] = {}

    @staticmethod
    def split_symbol(symbol: str, /) -> str:
        raise NotImplementedError

    def expect(self, symbols: Iterable[str]) -> None:
        """Accept trades of these venue symbols only (the instruments K2 subscribes to)."""
        self._known = frozenset(symbols)
        self._names.clear()

    def canonical(self, symbol: str) -> str:
        if self._known is not None and symbol not in self._known:
            raise ParseError(f"symbol {symbol!r} is not one K2 subscribed to", symbol)
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
            canonical = self.canonical(symbol)  # raises for a symbol K2 did not subscribe to
            found = self._names[symbol] = (symbol, canonical)
        return found

    def use_listing(self, listing: Listing) -> None:
        self._canonical.update(listing.symbols)
        self._names.clear()


def collect_trades(
    items: Iterable[T],
    make: Callable[[T], Trade],
    trades: list[Trade],
    rejected: list[ParseError] | None,
) -> None:
    """Normalize each trade of a multi-trade message or REST page: valid ones to `trades`, bad ones
    to `rejected` (with `rejected` None, the first bad one raises)."""
    for item in items:
        try:
            trades.append(make(item))
        except ParseError as err:
            if rejected is None:
                raise
            rejected.append(err)
