"""Prefect flows: thin shells over archive/ (offload, maintenance, reconcile).

`FLOWS[name](tables, on_table=listener)` runs one in this thread; `listener` (optional) is told
as each table starts and ends (see progress.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from k2.archive.status import FLOW_NAMES
from k2.flows import maintenance, offload, reconcile
from k2.flows.maintenance import maintenance_flow
from k2.flows.offload import offload_flow
from k2.flows.progress import OnTable, listening
from k2.flows.reconcile import reconcile_flow

log = logging.getLogger(__name__)
_api_lock = threading.Lock()


@dataclass
class ApiStart:
    """How Prefect's API came up in this process (its temporary server, or PREFECT_API_URL's):
    shown as progress, in `k2 up`'s status and as the `prefect` health row."""

    started_at: float = 0.0  # UNIX time of the first wait for it (0: not asked yet)
    ready_at: float = 0.0  # when it first answered (0: not yet)
    error: str = ""  # why the last wait failed

    def waited(self, now: float | None = None) -> float:
        end = self.ready_at or (time.time() if now is None else now)
        return end - self.started_at if self.started_at else 0.0


API = ApiStart()


def prefect_api_ready() -> None:
    """Make sure Prefect's API answers before a flow runs.

    With no PREFECT_API_URL, the first flow call starts Prefect's temporary API server (seconds,
    tens of seconds on a busy machine). Prefect marks that server running before it answers, so a
    second thread starting a flow meanwhile (a scheduled run and one asked for over the API)
    would talk to a server that is not up yet; the lock makes it wait instead.
    """
    from prefect.client.orchestration import get_client

    with _api_lock:
        if API.ready_at:
            return
        API.started_at = API.started_at or time.time()
        try:
            with get_client(sync_client=True) as client:
                failed = client.api_healthcheck()
        except Exception as err:  # its temporary server did not start
            API.error, API.started_at = str(err)[:300], 0.0  # the next flow waits afresh
            raise
        if failed is not None:  # the flow call says the rest
            API.error, API.started_at = str(failed)[:300], 0.0
            return
        API.ready_at, API.error = time.time(), ""
        log.info("Prefect's API answers after %.1f s", API.waited())


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
