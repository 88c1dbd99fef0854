"""Prefect flows: thin shells over archive/ (offload, maintenance, reconcile).

`FLOWS[name](tables, on_table=listener)` runs one in this thread; `listener` (optional) is told
as each table starts and ends (see progress.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from k2.archive.status import FLOW_NAMES
from k2.flows import maintenance, offload, reconcile
from k2.flows.maintenance import maintenance_flow
from k2.flows.offload import offload_flow
from k2.flows.progress import OnTable, listening
from k2.flows.reconcile import reconcile_flow

_api_lock = threading.Lock()


def prefect_api_ready() -> None:
    """Make sure Prefect's API answers before a flow runs.

    With no PREFECT_API_URL, the first flow call starts Prefect's temporary API server (seconds,
    tens of seconds on a busy machine). Prefect marks that server running before it answers, so a
    second thread starting a flow meanwhile (a scheduled run and one asked for over the API)
    would talk to a server that is not up yet; the lock makes it wait instead.
    """
    from prefect.client.orchestration import get_client

    with _api_lock, get_client(sync_client=True) as client:
        client.api_healthcheck()


def _when_ready(flow: Callable[..., Any]) -> Callable[..., Any]:
    def run(tables: list[str] | None = None, on_table: OnTable | None = None) -> Any:
        prefect_api_ready()
        if on_table is None:  # a listener set around the call (`listening`) still hears it
            return flow(tables)
        with listening(on_table):
            return flow(tables)

    run.__name__ = run.__qualname__ = getattr(flow, "name", flow.__name__)
    return run


FLOWS: dict[str, Callable[..., Any]] = {
    offload.NAME: _when_ready(offload_flow),
    maintenance.NAME: _when_ready(maintenance_flow),
    reconcile.NAME: _when_ready(reconcile_flow),
}
assert tuple(FLOWS) == FLOW_NAMES, "every flow in k2.archive.status.FLOW_NAMES, in its order"
