"""Where a feed resumes after a restart: per-symbol cursors and gaps still being repaired."""

from __future__ import annotations

from dataclasses import dataclass, field

from k2.records import Gap


@dataclass
class SymbolCursor:
    high: int | None = None  # highest trade id stored
    high_ts: int = 0  # its event time (UTC ns)
    recent: list[int] = field(default_factory=list)  # recent ids (venues with non-contiguous ids)


@dataclass
class ResumeState:
    """What the store knows per venue: cursors by symbol and unresolved gaps with their holes."""

    cursors: dict[str, dict[str, SymbolCursor]] = field(default_factory=dict)  # venue -> symbol -> cursor
    # venue -> (gap, still-missing id ranges) for gaps that were pending when the process stopped
    pending: dict[str, list[tuple[Gap, list[tuple[int, int]]]]] = field(default_factory=dict)
