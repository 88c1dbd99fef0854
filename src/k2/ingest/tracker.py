"""Per (venue, symbol) trade-id bookkeeping: what is new, what is a duplicate,
where the holes are."""

from __future__ import annotations

import bisect
import enum
from collections import deque
from collections.abc import Iterable


class Verdict(enum.Enum):
    NEW = "new"  # above everything seen so far
    FILL = "fill"  # fills a known hole (late message or backfill)
    DUPLICATE = "duplicate"
    # So far above the highest id (more than the venue's max_id_jump) that it is more likely a
    # corrupt frame than a trade, or the first id of a symbol with no cursor, which nothing can
    # check yet: nothing changes until the feed confirms it (`adopt`) or drops it.
    SUSPECT = "suspect"


# offer()'s answers that open no hole, built once (the hot path allocates nothing for them).
_NEW = (Verdict.NEW, None)
_FILL = (Verdict.FILL, None)
_DUPLICATE = (Verdict.DUPLICATE, None)
_SUSPECT = (Verdict.SUSPECT, None)
NO_LIMIT = 2**64  # a bound on id jumps that never binds


class Holes:
    """A set of missing ids kept as sorted, disjoint, inclusive intervals."""

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []

    def __len__(self) -> int:
        return len(self._lo)

    def __bool__(self) -> bool:
        return bool(self._lo)

    def add(self, lo: int, hi: int) -> None:
        """Add ids lo..hi, which must not overlap existing holes."""
        i = bisect.bisect_left(self._lo, lo)
        self._lo.insert(i, lo)
        self._hi.insert(i, hi)

    def _find(self, x: int) -> int:
        i = bisect.bisect_right(self._lo, x) - 1
        return i if i >= 0 and self._hi[i] >= x else -1

    def __contains__(self, x: int) -> bool:
        return self._find(x) >= 0

    def discard(self, x: int) -> bool:
        """Remove id `x`; return whether it was missing."""
        i = self._find(x)
        if i < 0:
            return False
        lo, hi = self._lo[i], self._hi[i]
        if lo == hi:
            del self._lo[i], self._hi[i]
        elif x == lo:
            self._lo[i] = x + 1
        elif x == hi:
            self._hi[i] = x - 1
        else:
            self._hi[i] = x - 1
            self._lo.insert(i + 1, x + 1)
            self._hi.insert(i + 1, hi)
        return True

    def count_in(self, lo: int, hi: int) -> int:
        """Return how many ids in lo..hi are still missing."""
        total = 0
        for a, b in zip(self._lo, self._hi, strict=True):
            if b < lo or a > hi:
                continue
            total += min(b, hi) - max(a, lo) + 1
        return total

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._lo, self._hi, strict=True))


class ContiguousTracker:
    """For venues whose ids are a per-symbol sequence: any jump above the high mark is a gap."""

    __slots__ = ("high", "high_ts", "holes", "max_jump")

    def __init__(self, high: int | None = None, high_ts: int = 0, max_jump: int = NO_LIMIT) -> None:
        self.high = high
        self.high_ts = high_ts
        self.holes = Holes()
        self.max_jump = max_jump

    def offer(self, trade_id: int, ts_event: int) -> tuple[Verdict, tuple[int, int] | None]:
        """Classify a trade id; for a NEW id above high + 1 also return the hole (lo, hi)
        it opens."""
        high = self.high
        if high is None:
            if self.max_jump != NO_LIMIT:
                return _SUSPECT  # a first id: the next trades confirm it
            self.high, self.high_ts = trade_id, ts_event
            return _NEW
        if trade_id > high:
            if trade_id == high + 1:
                self.high, self.high_ts = trade_id, ts_event
                return _NEW
            if trade_id - high > self.max_jump:
                return _SUSPECT
            return self.adopt(trade_id, ts_event)
        if self.holes and self.holes.discard(trade_id):
            return _FILL
        return _DUPLICATE

    def adopt(self, trade_id: int, ts_event: int) -> tuple[Verdict, tuple[int, int] | None]:
        """Take `trade_id` (above the high mark) as new, whatever the jump;
        return the hole it opens."""
        high = self.high
        self.high, self.high_ts = trade_id, ts_event
        if high is None or trade_id == high + 1:
            return _NEW
        gap = (high + 1, trade_id - 1)
        self.holes.add(*gap)
        return Verdict.NEW, gap


class SeenTracker:
    """For venues whose ids may skip: dedupe against a bounded window of recently seen ids."""

    __slots__ = ("_capacity", "_floor", "_order", "_seen", "high", "high_ts", "max_jump")

    def __init__(
        self, capacity: int, recent: Iterable[int] = (), high_ts: int = 0, max_jump: int = NO_LIMIT
    ) -> None:
        self._capacity = capacity
        self.max_jump = max_jump
        self._seen: set[int] = set()
        self._order: deque[int] = deque()
        self._floor = -1  # ids at or below this fell out of the window: treated as seen
        self.high: int | None = None
        self.high_ts = high_ts
        ordered = sorted(recent)
        if ordered:
            # Ids older than the reloaded window were stored before a restart: treat them as seen.
            self._floor = ordered[0] - 1
        for trade_id in ordered:
            if trade_id not in self._seen:
                self.adopt(trade_id, high_ts)  # stored before: whatever their spacing

    def offer(self, trade_id: int, ts_event: int) -> tuple[Verdict, tuple[int, int] | None]:
        seen = self._seen
        if trade_id in seen or trade_id <= self._floor:
            return _DUPLICATE
        high = self.high
        if high is None:
            if self.max_jump != NO_LIMIT:
                return _SUSPECT  # a first id: the next trades confirm it
        elif trade_id - high > self.max_jump:
            return _SUSPECT
        return self.adopt(trade_id, ts_event)

    def adopt(self, trade_id: int, ts_event: int) -> tuple[Verdict, tuple[int, int] | None]:
        """Take `trade_id` as seen,
        whatever its distance from the highest id (never a hole here)."""
        seen = self._seen
        seen.add(trade_id)  # remember it; the oldest leaves the window
        order = self._order
        order.append(trade_id)
        if len(order) > self._capacity:
            old = order.popleft()
            seen.discard(old)
            if old > self._floor:
                self._floor = old
        high = self.high
        if high is None or trade_id > high:
            self.high, self.high_ts = trade_id, ts_event
            return _NEW
        return _FILL
