"""Entrypoints for Prefect deployments (deploy/prefect/prefect.yaml): a worker runs each flow in a
fresh process, so these open the store and archive the settings name, then run the flow inside.

In the embedded shape `k2 up` runs the same flows in its own process instead (see schedule.py):
chDB allows one process per data directory, so deployments are for the cluster shape.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from k2.flows import FLOWS
from k2.flows import maintenance as maintenance_flows
from k2.flows import offload as offload_flows
from k2.flows import reconcile as reconcile_flows
from k2.flows.runtime import standalone
from k2.settings import load_settings


def _run(name: str, tables: list[str] | None) -> Any:
    with standalone(load_settings(), f"prefect worker ({name})"):
        return FLOWS[name](tables)


@flow(name="k2-offload-deployment")
def offload(tables: list[str] | None = None) -> Any:
    """Archive the hot tables to Iceberg (every 15 minutes)."""
    return _run(offload_flows.NAME, tables)


@flow(name="k2-maintenance-deployment")
def maintenance(tables: list[str] | None = None) -> Any:
    """Compact, expire snapshots, remove orphan files, audit (daily at 02:00 UTC)."""
    return _run(maintenance_flows.NAME, tables)


@flow(name="k2-reconcile-deployment")
def reconcile(tables: list[str] | None = None) -> Any:
    """Compare hot and archive per table and day (daily, after maintenance)."""
    return _run(reconcile_flows.NAME, tables)
