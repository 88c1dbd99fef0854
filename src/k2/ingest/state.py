"""Where a feed resumes after a restart: per-symbol cursors and gaps still being repaired."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from k2.records import Gap


@dataclass
class SymbolCursor:
    high: int | None = None  # highest trade id stored
    high_ts: int = 0  # its event time (UTC ns)
    recent: list[int] = field(default_factory=list)  # recent ids (venues with non-contiguous ids)


class ResumedGap(NamedTuple):
    """A gap that was pending at the last stop: its record and the id ranges still missing."""

    gap: Gap
    holes: list[tuple[int, int]]


@dataclass
class ResumeState:
    """What the store knows per venue: cursors by symbol and unresolved gaps with their holes."""

    # venue -> symbol -> cursor
    cursors: dict[str, dict[str, SymbolCursor]] = field(default_factory=dict)
    pending: dict[str, list[ResumedGap]] = field(default_factory=dict)  # venue -> gaps to resume


def holes_in(first: int, last: int, present: Iterable[int]) -> list[tuple[int, int]]:
    """The id ranges of [first, last] not in `present`, in order."""
    holes, lo = [], first
    for trade_id in sorted(set(present)):
        if trade_id > last:
            break
        if trade_id > lo:
            holes.append((lo, trade_id - 1))
        lo = max(lo, trade_id + 1)
    if lo <= last:
        holes.append((lo, last))
    return holes


def subtract_ranges(lo: int, hi: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of lo..hi outside every (inclusive) range in `covered`."""
    parts = [(lo, hi)]
    for a, b in covered:
        parts = [
            piece
            for x, y in parts
            for piece in ((x, min(y, a - 1)), (max(x, b + 1), y))
            if piece[0] <= piece[1]
        ]
    return parts
