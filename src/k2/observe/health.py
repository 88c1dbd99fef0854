"""`k2 health` and `/health`: the checks an operator would run by hand, judged OK / WARN / FAIL.

One set of rules for both ways of asking: `k2 up` evaluates them on its live state; with the
process stopped, `k2 health` evaluates them on what the data directory holds (the ops tables the
flows write, the hot tables' newest rows) and reports that nothing is capturing. In the cluster
shape it also reads the bus: the broker, the ingest group's lag, and each `k2 feed` and `k2 ingest`
process's newest heartbeat (bus/status.py), whose feeds then stand for `k2 up`'s.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from k2.archive.tables import TABLES
from k2.hotstore.schema import SILVER_TABLE, bronze_table, ohlcv_table
from k2.ingest.stats import LIVE, STOPPED, FeedStats
from k2.observe.checks import EXIT_CODES, FAIL, OK, WARN, Check, ago, worst
from k2.observe.health_bus import bus_checks, reporting

__all__ = [
    "EXIT_CODES",
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "HealthInputs",
    "evaluate",
    "overall",
    "report",
]

if TYPE_CHECKING:
    from k2.archive.status import ArchiveStatus
    from k2.bus.status import BusView
    from k2.hotstore.stats import WriterStats
    from k2.settings import HealthSettings


@dataclass
class HealthInputs:
    now: float
    running: bool  # is `k2 up` running (live feed state below) or is this a stopped data directory
    venues: list[str]  # enabled venues
    data_dir: Path
    archive: ArchiveStatus
    hot_rows: dict[str, int] = field(default_factory=dict)
    hot_newest: dict[str, float] = field(default_factory=dict)  # table -> epoch seconds
    feeds: list[tuple[FeedStats, int]] = field(default_factory=list)  # with gaps awaiting repair
    writer: WriterStats | None = None
    max_pending_rows: int = 0
    started_at: float = 0.0  # when the running process started (0: stopped)
    bus: BusView | None = None  # the cluster shape's bus, as `k2 health` read it
    # Prefect's API in this process (flows/__init__.py, API): first asked, first answered, error
    prefect: tuple[float, float, str] = (0.0, 0.0, "")


def overall(checks: Sequence[Check]) -> str:
    return worst([c.status for c in checks])


def report(checks: Sequence[Check]) -> dict[str, Any]:
    """The JSON form (`/health`, `k2 health --json`)."""
    status = overall(checks)
    return {
        "status": status,
        "exit_code": EXIT_CODES[status],
        "checks": [asdict(c) for c in checks],
    }


def evaluate(inp: HealthInputs, s: HealthSettings) -> list[Check]:
    return [
        *_feeds(inp, s),
        *([] if inp.bus is None else bus_checks(inp.bus, inp.now, s)),
        *_freshness(inp, s),
        *_offload(inp, s),
        _maintenance(inp, s),
        _reconcile(inp, s),
        *_prefect(inp, s),
        _disk(inp, s),
    ]


def _prefect(inp: HealthInputs, s: HealthSettings) -> list[Check]:
    """Prefect's API, from the first flow that asked for it: its temporary server takes tens of
    seconds to start on a busy machine, and every flow waits for it."""
    started, ready, error = inp.prefect
    if not started:
        return []
    if ready:
        return [Check("prefect", OK, f"API answered after {ago(ready - started)}")]
    waited = inp.now - started
    status = FAIL if waited > s.prefect_start_fail_s else WARN
    why = f" ({error[:160]})" if error else ""
    return [Check("prefect", status, f"flows wait for its API: {ago(waited)} so far{why}")]


def _feeds(inp: HealthInputs, s: HealthSettings) -> list[Check]:
    checks = []
    feeds = inp.feeds
    if not inp.running:
        if inp.bus is None:
            return [Check("feeds", FAIL, "k2 up is not running: no feed is capturing trades")]
        if inp.bus.error:
            return [Check("feeds", FAIL, "unknown: the bus cannot be read")]
        feeds = [
            (f.rebased(inp.now - b.sent_at), f.open_gaps)
            for b in reporting(inp.bus, inp.now, s)
            if b.role == "feed"
            for f in b.feeds
        ]
        missing = sorted(set(inp.venues) - {f.venue for f, _ in feeds})
        if missing:
            checks.append(Check("feeds", FAIL, f"no k2 feed process reports {', '.join(missing)}"))
    for f, open_gaps in feeds:
        name = f"feed {f.venue}"
        if f.state == LIVE:
            silent = sorted(
                n
                for n, sym in f.symbols.items()
                if sym.listing != "not listed"
                and (
                    inp.now - sym.last_trade_recv_ns / 1e9
                    if sym.last_trade_recv_ns
                    else f.live_for()
                )
                > s.symbol_silent_s
            )
            detail = f"live, {f.trades:,} trades, {f.reconnects} reconnects"
            checks.append(
                Check(
                    name,
                    WARN,
                    f"{detail}; no trade for {ago(s.symbol_silent_s)}+: {', '.join(silent)}",
                )
                if silent
                else Check(name, OK, detail)
            )
        elif f.state == STOPPED:
            checks.append(Check(name, FAIL, f"stopped: {f.state_detail or 'no symbols'}"))
        else:
            down = f.down_for()
            why = f"{f.state} for {ago(down)}" + (f" ({f.state_detail})" if f.state_detail else "")
            checks.append(Check(name, FAIL if down > s.feed_down_s else WARN, why))
        unrepaired = f.gaps_unrecoverable + f.gaps_partial + f.gaps_suspicious
        gaps = (
            f"{f.gaps_found} gaps found, {f.gaps_repaired} repaired, {f.gaps_partial} partly, "
            f"{f.gaps_unrecoverable} unrecoverable, {f.gaps_suspicious} suspicious, "
            f"{open_gaps} being repaired"
        )
        checks.append(Check(f"gaps {f.venue}", WARN if unrepaired else OK, gaps))
    w = inp.writer
    if w is not None:
        backlog = w.pending >= inp.max_pending_rows > 0
        stale = w.pending and w.last_flush_at and inp.now - w.last_flush_at > 30
        detail = (
            f"{w.batches:,} batches, {w.pending:,} rows pending, "
            f"backpressure {w.backpressure_s:.1f} s in all"
        )
        checks.append(Check("writer", WARN if backlog or stale else OK, detail))
        if w.store_down_since:
            checks.append(
                Check(
                    "hot store",
                    FAIL,
                    f"not taking inserts for {ago(inp.now - w.store_down_since)} "
                    f"({w.store_error[:200]}); {w.pending:,} rows wait",
                )
            )
        elif w.refused_rows:
            checks.append(
                Check(
                    "hot store",
                    WARN,
                    f"taking inserts; refused {w.refused_rows:,} trades (in rejects)",
                )
            )
        else:
            checks.append(Check("hot store", OK, "taking inserts"))
    return checks


def _freshness(inp: HealthInputs, s: HealthSettings) -> list[Check]:
    checks = []
    tables = [SILVER_TABLE, *(bronze_table(v) for v in inp.venues), ohlcv_table("1m")]
    for table in tables:
        newest = inp.hot_newest.get(table)
        if newest is None:
            checks.append(Check(f"fresh {table}", FAIL, "no rows"))
            continue
        # the newest 1m window started up to 60 s ago
        allowance = 60.0 if table.startswith("ohlcv_") else 0.0
        age = inp.now - newest - allowance
        status = FAIL if age > s.fresh_fail_s else WARN if age > s.fresh_warn_s else OK
        checks.append(
            Check(
                f"fresh {table}",
                status,
                f"newest event {ago(inp.now - newest)} ago, {inp.hot_rows.get(table, 0):,} rows",
            )
        )
    return checks


def _offload(inp: HealthInputs, s: HealthSettings) -> list[Check]:
    checks = []
    for spec in TABLES:
        t = inp.archive.tables[spec.name]
        name = f"offload {spec.name}"
        failing = (
            f"{t.consecutive_failures} failed runs in a row: {t.last_error[:160]}"
            if t.consecutive_failures
            else ""
        )
        if not t.newest_event_ns:  # nothing archived yet
            if failing:
                status = FAIL if t.consecutive_failures >= s.offload_failures_fail else WARN
                checks.append(Check(name, status, failing))
            elif t.last_success:  # candle tables: no window has finished since hot began
                checks.append(
                    Check(
                        name,
                        OK,
                        f"up to date, nothing finished to archive; last success "
                        f"{ago(inp.now - t.last_success)} ago",
                    )
                )
            elif not inp.hot_rows.get(spec.name):
                checks.append(Check(name, OK, "nothing to archive yet"))
            else:  # rows wait and no offload ever ran: fine only shortly after start
                due = inp.started_at and inp.now - inp.started_at < s.offload_lag_warn_s
                checks.append(
                    Check(
                        name,
                        OK if due else WARN,
                        "not archived yet" + (" (first run due)" if due else ""),
                    )
                )
            continue
        lag = inp.now - t.newest_event_ns / 1e9
        excess = lag - spec.window_seconds  # candle tables archive finished windows only
        status = worst(
            [
                FAIL
                if t.consecutive_failures >= s.offload_failures_fail
                or excess > s.offload_lag_fail_s
                else OK,
                WARN
                if t.consecutive_failures >= s.offload_failures_warn
                or excess > s.offload_lag_warn_s
                else OK,
            ]
        )
        last = (
            f"last success {ago(inp.now - t.last_success)} ago"
            if t.last_success
            else "never succeeded"
        )
        checks.append(
            Check(name, status, f"lag {ago(lag)}, {last}" + (f"; {failing}" if failing else ""))
        )
    return checks


def _young(inp: HealthInputs, max_age_s: float) -> bool:
    """Is the archive younger than a daily job's allowance (so that job not having run is fine)?"""
    first = min(
        (t.first_attempt for t in inp.archive.tables.values() if t.first_attempt), default=0.0
    )
    return not first or inp.now - first < max_age_s


def _maintenance(inp: HealthInputs, s: HealthSettings) -> Check:
    st, max_age = inp.archive, s.maintenance_max_age_h * 3600
    if not st.maintenance_at:
        return Check(
            "maintenance",
            OK if _young(inp, max_age) else WARN,
            "never run"
            + (" (not yet due)" if _young(inp, max_age) else f" in the archive's {ago(max_age)}+"),
        )
    if not st.maintenance_ok:
        return Check("maintenance", FAIL, f"last run {ago(inp.now - st.maintenance_at)} ago failed")
    age = inp.now - st.maintenance_success_at
    files = sum(r.files_after for r in st.maintenance.values())
    return Check(
        "maintenance",
        WARN if age > max_age else OK,
        f"last success {ago(age)} ago, {files:,} data files",
    )


def _reconcile(inp: HealthInputs, s: HealthSettings) -> Check:
    st, max_age = inp.archive, s.reconcile_max_age_h * 3600
    if not st.reconcile_at:
        return Check(
            "reconcile",
            OK if _young(inp, max_age) else WARN,
            "never run"
            + (" (not yet due)" if _young(inp, max_age) else f" in the archive's {ago(max_age)}+"),
        )
    bad = {name: [c for c in checks if not c.ok] for name, checks in st.reconcile.items()}
    bad = {name: days for name, days in bad.items() if days}
    age = inp.now - st.reconcile_at
    if bad:
        worst = ", ".join(
            f"{n} ({len(d)} days, {sum(abs(c.difference) for c in d):,} rows)"
            for n, d in sorted(bad.items())
        )
        return Check("reconcile", FAIL, f"hot and archive differ: {worst}")
    days = sum(len(c) for c in st.reconcile.values())
    return Check(
        "reconcile",
        WARN if age > max_age else OK,
        f"last run {ago(age)} ago, {days} table-days agree",
    )


def _disk(inp: HealthInputs, s: HealthSettings) -> Check:
    usage = shutil.disk_usage(inp.data_dir)
    free_pct = 100 * usage.free / usage.total
    status = FAIL if free_pct < s.disk_fail_pct else WARN if free_pct < s.disk_warn_pct else OK
    return Check(
        "disk",
        status,
        f"{usage.free / 2**30:,.1f} GiB free of {usage.total / 2**30:,.1f} GiB "
        f"({free_pct:.0f} %) at {inp.data_dir}",
    )
