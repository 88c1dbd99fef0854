"""Live counters per venue and symbol. The hot path bumps plain ints;
metrics read them on scrape."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class FeedState(enum.StrEnum):
    """The connection state a venue can be in (also exported as a metric label)."""

    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"  # no route to the venue at all (no internet, DNS failure)
    STOPPED = "stopped"


CONNECTING, LIVE, RECONNECTING = FeedState.CONNECTING, FeedState.LIVE, FeedState.RECONNECTING
OFFLINE, STOPPED = FeedState.OFFLINE, FeedState.STOPPED
STATES = tuple(FeedState)


@dataclass(slots=True)
class SymbolStats:
    trades: int = 0
    duplicates: int = 0
    gaps: int = 0
    last_trade_recv_ns: int = 0
    last_trade_event_ns: int = 0
    listing: str = "unchecked"  # unchecked | listed | not listed | <venue status>


@dataclass(slots=True)
class FeedStats:
    venue: str
    state: FeedState = CONNECTING
    state_detail: str = ""
    connects: int = 0
    reconnects: int = 0
    rotations: int = 0
    watchdog_trips: int = 0
    messages: int = 0
    trades: int = 0
    duplicates: int = 0
    rejects: int = 0
    venue_errors: int = 0
    gaps_found: int = 0
    gaps_repaired: int = 0
    gaps_partial: int = 0
    gaps_unrecoverable: int = 0
    # id jumps beyond the venue's bound, confirmed by the stream (not fetched)
    gaps_suspicious: int = 0
    suspects_rejected: int = 0  # trades held as suspect that the stream did not confirm (rejects)
    backfilled: int = 0  # trades recovered over REST
    late_fills: int = 0  # trades that filled a hole on the live stream (out of order)
    sequence_gaps: int = 0  # per-connection message sequence jumps
    rest_requests: int = 0
    rest_rate_limited: int = 0
    rest_errors: int = 0
    connected_since: float = 0.0  # monotonic, 0 when not connected
    down_since: float = field(default_factory=time.monotonic)  # monotonic, 0 while live
    last_message_ns: int = 0  # local receive time of the newest message (heartbeats included)
    symbols: dict[str, SymbolStats] = field(default_factory=dict)

    def symbol(self, name: str) -> SymbolStats:
        found = self.symbols.get(name)
        if found is None:
            found = self.symbols[name] = SymbolStats()
        return found

    def set_state(self, state: FeedState, detail: str = "") -> None:
        self.state, self.state_detail = state, detail
        now = time.monotonic()
        if state == LIVE:
            self.connected_since, self.down_since = now, 0.0
        else:
            self.connected_since = 0.0
            self.down_since = self.down_since or now  # since the feed was last live

    def live_for(self) -> float:
        """Seconds the current connection has been live (0 while not live)."""
        return time.monotonic() - self.connected_since if self.connected_since else 0.0

    def down_for(self) -> float:
        """Seconds since the feed was last live (0 while it is)."""
        return time.monotonic() - self.down_since if self.down_since else 0.0
