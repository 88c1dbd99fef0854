"""Where a feed resumes after a restart: per-symbol cursors and gaps still being repaired."""

from __future__ import annotations

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
