"""Per-table progress of a flow run: a listener is told when each table starts and ends.

    FLOWS["offload"](tables, on_table=print)  # TableEvent(flow='offload', table=..., state=...)

The listener belongs to the run that was given it: it is kept in a context variable, so runs in
other threads (the schedule inside `k2 up`, another API request) never reach it. It is called in
the thread the flow runs in, synchronously; one that hands events to another thread must do so
safely (a `queue.Queue`). A listener that raises is logged and never breaks the flow.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

log = logging.getLogger(__name__)

State = Literal["started", "done", "failed"]


@dataclass(frozen=True)
class TableEvent:
    """One table of a flow run started, finished (`done`, with its result) or failed (`error`)."""

    flow: str  # offload, maintenance or reconcile
    table: str
    index: int  # 1-based position of the table in this run
    total: int  # tables in this run
    state: State
    result: dict[str, Any] | None = None  # the flow's result for the table (done)
    error: str | None = None  # why it failed (failed)
    seconds: float = 0.0  # since the table started (done, failed)

    def to_json(self) -> dict[str, Any]:
        """The event as one NDJSON object (`"event": "table"`)."""
        return {"event": "table", **asdict(self)}

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> TableEvent:
        """The event `to_json` made (other keys are ignored)."""
        return cls(**{f.name: item[f.name] for f in fields(cls) if f.name in item})


OnTable = Callable[[TableEvent], None]

_listener: contextvars.ContextVar[OnTable | None] = contextvars.ContextVar("k2_on_table")


@contextlib.contextmanager
def listening(on_table: OnTable | None) -> Iterator[None]:
    """Tell `on_table` about every table of the flows run in this block (in this context)."""
    token = _listener.set(on_table)
    try:
        yield
    finally:
        _listener.reset(token)


class Tables:
    """One flow run's reports, table after table: `started`, then `done` or `failed`."""

    def __init__(self, flow: str, names: list[str]) -> None:
        self.flow = flow
        self.total = len(names)
        self._listener = _listener.get(None)
        self._index = 0
        self._since = 0.0

    def started(self, table: str) -> None:
        self._index += 1
        self._since = time.monotonic()
        self._tell(TableEvent(self.flow, table, self._index, self.total, "started"))

    def done(self, table: str, result: dict[str, Any]) -> None:
        self._tell(self._end(table, "done", result=result))

    def failed(self, table: str, error: str) -> None:
        self._tell(self._end(table, "failed", error=error))

    def _end(self, table: str, state: State, **what: Any) -> TableEvent:
        seconds = time.monotonic() - self._since
        return TableEvent(self.flow, table, self._index, self.total, state, seconds=seconds, **what)

    def _tell(self, event: TableEvent) -> None:
        if self._listener is None:
            return
        try:
            self._listener(event)
        except Exception:  # a listener's bug must never fail the archive
            log.warning(
                "%s: the progress listener failed on %s (%s)",
                self.flow,
                event.table,
                event.state,
                exc_info=True,
            )
