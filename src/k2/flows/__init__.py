"""Prefect flows: thin shells over archive/ (offload, maintenance, reconcile)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from k2.flows.maintenance import maintenance_flow
from k2.flows.offload import offload_flow
from k2.flows.reconcile import reconcile_flow

FLOWS: dict[str, Callable[..., Any]] = {
    "offload": offload_flow,
    "maintenance": maintenance_flow,
    "reconcile": reconcile_flow,
}
