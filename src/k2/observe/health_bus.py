"""`k2 health`'s rows for the cluster shape's bus: the broker, the ingest group's lag, and each
`k2 feed` and `k2 ingest` process by its newest heartbeat (bus/status.py). The feed rows built
from those heartbeats are observe/health.py's, as for `k2 up`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from k2.observe.checks import FAIL, OK, WARN, Check, ago

if TYPE_CHECKING:
    from k2.bus.status import BusView, Heartbeat
    from k2.settings import HealthSettings


def reporting(view: BusView, now: float, s: HealthSettings) -> list[Heartbeat]:
    """The processes running now: heard from lately, and not stopped."""
    return [b for b in view.processes if not b.stopped and now - b.sent_at <= s.bus_silent_s]


def bus_checks(view: BusView, now: float, s: HealthSettings) -> list[Check]:
    """The bus's rows: the broker, the ingest group's lag, and one per process heartbeat."""
    if view.error:
        return [Check("bus broker", FAIL, f"cannot read {view.address}: {view.error[:200]}")]
    checks = [Check("bus broker", OK, f"answers at {view.address}")]
    if view.partial:
        stale = "the heartbeats were not all read in time: process rows may be stale"
        checks.append(Check("bus status", WARN, stale))
    if view.lag:
        worst = max(view.lag, key=lambda p: p.lag)
        never = sum(p.committed < 0 for p in view.lag)
        lag_status = (
            FAIL
            if worst.lag >= s.bus_lag_fail_messages
            else WARN
            if worst.lag >= s.bus_lag_warn_messages
            else OK
        )
        detail = (
            f"group {view.group}: {sum(p.lag for p in view.lag):,} messages to read, most on "
            f"{worst.topic}[{worst.partition}] ({worst.lag:,})"
        )
        if never:
            detail += f"; {never} of {len(view.lag)} partitions never committed"
        checks.append(Check("bus lag", lag_status, detail))
    else:
        checks.append(Check("bus lag", OK, "no K2 topics yet"))
    for b in view.processes:
        age = now - b.sent_at
        if age > s.bus_forget_h * 3600:
            continue
        name = b.process
        if b.stopped:
            checks.append(Check(name, OK, f"stopped cleanly {ago(age)} ago"))
        elif age > s.bus_silent_s:
            checks.append(
                Check(name, FAIL, f"no heartbeat for {ago(age)} (pid {b.pid}): killed or stuck")
            )
        else:
            checks.append(_process(b, now))
    return checks


def _process(b: Heartbeat, now: float) -> Check:
    """A running process's own row: its producer's or its consumers' and writer's state."""
    fails: list[str] = []
    warns: list[str] = []
    parts = [f"pid {b.pid}, up {ago(now - b.started_at)}"]
    p = b.producer
    if p is not None:
        parts.append(
            f"{p.delivered:,} of {p.messages:,} messages acknowledged, "
            f"buffer {p.buffered:,}/{p.buffer_limit:,}"
        )
        if p.fatal:
            fails.append(f"producer failed: {p.fatal[:160]}")
        if p.last_delivery_error_at and now - p.last_delivery_error_at < 600:
            fails.append(f"{p.delivery_errors:,} delivery errors")
        if p.brokers_down_since:
            warns.append(f"broker unreachable for {ago(now - p.brokers_down_since)}")
        if p.buffer_limit and p.buffered >= 0.8 * p.buffer_limit:
            warns.append("buffer over 80 % full")
        if p.last_overflow_at and now - p.last_overflow_at < 300:
            waited = f"capture waited {p.backpressure_s:.1f} s in all"
            warns.append(f"buffer full {p.overflows:,} times, {waited}")
    if b.consumers:
        batches = sum(c.batches for c in b.consumers)
        assigned = sum(len(c.assigned) for c in b.consumers)
        parts.append(
            f"{len(b.consumers)} members, {assigned} partitions, {batches:,} batches, "
            f"{sum(c.messages for c in b.consumers):,} messages"
        )
        undecodable = sum(c.undecodable for c in b.consumers)
        if any(c.last_undecodable_at and now - c.last_undecodable_at < 900 for c in b.consumers):
            warns.append(f"{undecodable:,} messages not K2's (in rejects)")
    w = b.writer
    if w is not None and w.store_down_since:
        down = ago(now - w.store_down_since)
        fails.append(f"hot store not taking inserts for {down} ({w.store_error[:120]})")
    status = FAIL if fails else WARN if warns else OK
    return Check(b.process, status, "; ".join([", ".join(parts), *fails, *warns]))
