"""Where a feed process resumes after a restart (even after kill -9), read back from the bus.

In the cluster shape the bus is the feed stage's truth, as silver is in the embedded shape: a trade
is captured once the broker has acknowledged it, and what it acknowledged is in the topic. So the
cursors are each symbol's highest id in `trades`, and a pending gap's holes are the ids of its
range no batch after it accepted. Each symbol's partition is read backwards, a window at a time,
until it holds the symbol's last trade, its recent ids (venues without contiguous ids) and the
first record of every gap still pending.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from k2.bus.client import config, partition_for
from k2.bus.topics import GapRecord, TradeBatch, decode_trades_message, record_gap, trade_key
from k2.ingest.repair import id_gap
from k2.ingest.state import ResumedGap, ResumeState, SymbolCursor, holes_in, subtract_ranges
from k2.records import PENDING, Gap, GapKind
from k2.settings import BusSettings

log = logging.getLogger(__name__)
WINDOW = 5_000  # messages read per step back
# Contiguous venues: the ids received this long before a symbol's newest are checked for holes no
# gap record covers. A feed publishes a gap once its grace (ingest.gap_grace_s, 0.3 s) is over, so
# a kill can leave holes without a record only among its last moments' trades: 30 s is ample.
HOLE_SCAN_NS = 30 * 1_000_000_000


@dataclass
class _Symbol:
    done: bool = False
    cursor: SymbolCursor | None = None
    recent: list[int] = field(default_factory=list)
    seen_gaps: set[str] = field(default_factory=set)
    pending: dict[str, GapRecord] = field(default_factory=dict)
    accepted: set[int] = field(default_factory=set)  # ids accepted in what was read back
    # contiguous venues: every id read back (with its event time) and the id ranges gap records
    # cover, to find holes a crash left before their gap record was published
    ids: dict[int, int] = field(default_factory=dict)
    covered: list[tuple[int, int]] = field(default_factory=list)
    newest_recv: int = 0


def resume_from_bus(
    settings: BusSettings,
    topic: str,
    partitions: int,
    venue: str,
    symbols: Iterable[str],
    recent_ids: int,
    contiguous: bool,
    timeout_s: float = 30.0,
) -> ResumeState:
    """Return the venue's cursors and pending gaps as the bus holds them."""
    from confluent_kafka import Consumer, TopicPartition

    wanted: dict[int, dict[str, _Symbol]] = {}
    for symbol in symbols:
        wanted.setdefault(partition_for(trade_key(venue, symbol), partitions), {})[symbol] = (
            _Symbol()
        )
    consumer = Consumer(
        config(
            settings,
            **{
                "group.id": f"{settings.group_id}-resume",  # assign() only: never joins
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    try:
        for partition, states in wanted.items():
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout_s
            )
            # The newest window is read to the partition's end, not to `high`: a broker may report
            # the high watermark one short (Tansu 0.6 does).
            upper: int | None = None
            lower = high
            while lower > low and not all(s.done for s in states.values()):
                lower = max(low, (upper if upper is not None else high) - WINDOW)
                batch = _read(consumer, TopicPartition(topic, partition, lower), upper, timeout_s)
                for value in reversed(batch):
                    _take_back(value, venue, states, recent_ids, contiguous)
                upper = lower
    finally:
        consumer.close()
    return _state(venue, wanted, contiguous)


def _read(consumer: Any, start: Any, upper: int | None, timeout_s: float) -> list[bytes]:
    """The values of offsets [start.offset, upper) of one partition (None: to its end)."""
    consumer.assign([start])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.5):
            if msg.partition() != start.partition:
                continue  # left over from the previous assignment
            error = msg.error()
            if error is not None:
                if error.code() == -191:  # _PARTITION_EOF
                    return values
                continue
            if upper is not None and msg.offset() >= upper:
                return values
            values.append(msg.value())
            if upper is not None and msg.offset() == upper - 1:
                return values
    raise TimeoutError(f"reading back {start.topic}[{start.partition}] took over {timeout_s} s")


def _take_back(
    value: bytes, venue: str, states: dict[str, _Symbol], recent_ids: int, contiguous: bool
) -> None:
    """One message, newest first."""
    try:
        message = decode_trades_message(value)
    except msgspec.DecodeError:
        return  # not K2's: the ingest workers count it
    s = states.get(message.symbol) if message.exchange == venue else None
    if s is None or s.done:
        return
    if isinstance(message, GapRecord):
        if message.kind == GapKind.IDS:
            s.covered.append((message.first_id, message.last_id))
        if message.gap_id not in s.seen_gaps:  # newest first: its latest version
            s.seen_gaps.add(message.gap_id)
            if message.outcome == PENDING:
                s.pending[message.gap_id] = message
        return
    assert isinstance(message, TradeBatch)
    ids = [w.trade_id for w in message.trades]
    if s.cursor is None:  # the newest batch knows the highest id published before it
        s.cursor = SymbolCursor(message.high_id, message.high_ts)
    s.accepted.update(w.trade_id for w in message.trades if w.accepted)
    if not contiguous and len(s.recent) < recent_ids:
        s.recent.extend(sorted(ids, reverse=True))
    oldest_gap = min((g.detected_at for g in s.pending.values()), default=None)
    newest_recv = max(w.ts_recv for w in message.trades)
    s.newest_recv = s.newest_recv or newest_recv
    if contiguous:
        s.ids.update((w.trade_id, w.ts_event) for w in message.trades)
    s.done = (
        s.cursor is not None
        and (contiguous or len(s.recent) >= recent_ids)
        and (oldest_gap is None or newest_recv < oldest_gap)
        and (not contiguous or newest_recv < s.newest_recv - HOLE_SCAN_NS)
    )


def _state(venue: str, wanted: dict[int, dict[str, _Symbol]], contiguous: bool) -> ResumeState:
    state = ResumeState()
    for states in wanted.values():
        for symbol, s in states.items():
            if s.cursor is not None:
                if not contiguous:
                    s.cursor.recent = s.recent
                state.cursors.setdefault(venue, {})[symbol] = s.cursor
            for record in s.pending.values():
                holes: list[tuple[int, int]] = []
                if record.kind == GapKind.IDS:
                    holes = holes_in(record.first_id, record.last_id, s.accepted)
                gap = record_gap(record)
                gap = msgspec.structs.replace(
                    gap, missing=sum(hi - lo + 1 for lo, hi in holes), recovered=0
                )
                state.pending.setdefault(venue, []).append(ResumedGap(gap, holes))
            for gap in _unrecorded(venue, symbol, s):
                log.warning(
                    "%s %s: ids %d-%d were missing at the last stop and no gap record covers "
                    "them: repairing",
                    venue,
                    symbol,
                    gap.first_id,
                    gap.last_id,
                )
                state.pending.setdefault(venue, []).append(
                    ResumedGap(gap, [(gap.first_id, gap.last_id)])
                )
    if state.pending:
        log.info(
            "%s: resuming %d gap repairs that were pending at the last stop",
            venue,
            sum(len(v) for v in state.pending.values()),
        )
    return state


def _unrecorded(venue: str, symbol: str, s: _Symbol) -> list[Gap]:
    """Holes among the ids read back (contiguous venues) that no gap record covers: a feed killed
    after publishing the trade that revealed a hole, before the hole's gap record."""
    ordered = sorted(s.ids.items())
    gaps = []
    for (prev, prev_ts), (tid, ts) in itertools.pairwise(ordered):
        if tid > prev + 1:
            for a, b in subtract_ranges(prev + 1, tid - 1, s.covered):
                gaps.append(id_gap(venue, symbol, a, b, prev_ts, ts))
    return gaps
