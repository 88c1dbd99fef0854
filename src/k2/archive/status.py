"""What the archive flows remember between runs: read by /metrics, /health and `k2 health`."""

from __future__ import annotations

from dataclasses import dataclass, field

from k2.archive.maintenance import MaintenanceResult
from k2.archive.reconcile import DayCheck
from k2.archive.tables import TABLES

# The archive flows, by name: the keys of k2.flows.FLOWS, the `flow` label of the metrics, and
# the values of ops_flow_runs.flow.
FLOW_NAMES = ("offload", "maintenance", "reconcile")


@dataclass
class TableStatus:
    """One archive table, as the offload last saw it."""

    last_success: float = 0.0  # wall clock of the last successful offload
    last_attempt: float = 0.0
    first_attempt: float = 0.0  # the first offload of the table ever (how old the archive is)
    consecutive_failures: int = 0
    failures: int = 0
    rows: int = 0  # rows offloaded by this process
    newest_event_ns: int = 0  # newest event (or window end) the archive holds
    watermark: int | None = None
    last_error: str = ""


@dataclass
class ArchiveStatus:
    tables: dict[str, TableStatus] = field(
        default_factory=lambda: {t.name: TableStatus() for t in TABLES}
    )
    cycle_seconds: float = 0.0
    cycle_started: float = 0.0  # wall clock when the running cycle began (0: none is running)
    cycle_at: float = 0.0
    cycles: int = 0
    maintenance: dict[str, MaintenanceResult] = field(default_factory=dict)
    maintenance_at: float = 0.0  # the last run, successful or not
    maintenance_ok: bool = True  # whether the last run succeeded for every table
    maintenance_success_at: float = 0.0
    maintenance_failures: int = 0
    reconcile: dict[str, list[DayCheck]] = field(default_factory=dict)
    reconcile_at: float = 0.0
    # flow -> runs skipped (another was running)
    skipped: dict[str, int] = field(default_factory=dict)
