"""What the flows share: the per-table loop, which errors are worth a retry, task options."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, ParamSpec, Protocol, TypeVar

import sqlalchemy
from prefect import Task
from pyiceberg.exceptions import CommitFailedException

from k2.errors import ArchiveError, PermanentError, StoreError, TransientError
from k2.flows.progress import Tables
from k2.flows.runtime import ArchiveRuntime

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
R_in = TypeVar("R_in", contravariant=True)

# A retry can fix these: a commit raced by another writer, a busy catalog, a store that is
# unavailable (StoreUnavailable is a TransientError) or failed in a way it did not explain, I/O.
TRANSIENT = (
    TransientError,
    StoreError,
    CommitFailedException,
    sqlalchemy.exc.OperationalError,
    sqlite3.OperationalError,
    OSError,
    TimeoutError,
)


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry only errors a retry can fix (never a PermanentError: the
    store refusing the data, bad settings, a stop)."""
    try:
        state.result()
    except PermanentError:
        return False
    except TRANSIENT:
        return True
    except Exception:  # noqa: BLE001 - any other failure is not retried
        return False
    return False


def with_retries(task: Task[P, R], runtime: ArchiveRuntime) -> Task[P, R]:
    settings = runtime.settings.archive
    return task.with_options(
        retries=settings.retries,
        retry_delay_seconds=settings.retry_delay_s,
        retry_condition_fn=is_transient,
    )


class TableSteps(Protocol[R_in]):
    """What one flow does around each table's task: record it, and say what the run reports."""

    def done(self, table: str, result: R_in, started: float) -> dict[str, Any]:
        """The task succeeded: record it; return what the flow reports for the table."""
        ...

    def failed(self, table: str, error: str, started: float) -> None:
        """The task failed for good (after its retries): record it."""
        ...

    def stopped(self, table: str, started: float) -> None:
        """The task gave up at a safe point because the process is stopping: record it."""
        ...


def for_each_table(
    rt: ArchiveRuntime,
    flow: str,
    names: Sequence[str],
    task: Task[[str], R],
    steps: TableSteps[R],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run `task` for each table in turn: the one loop every archive flow shares.

    A failed table is recorded and the run goes on to the next: one table never holds up the
    others. The run stops early only when the process is stopping. Each table is reported to the
    run's progress listener as it starts and ends. Returns (results, failures) by table.
    """
    run = with_retries(task, rt)
    progress = Tables(flow, list(names))
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name in names:
        if rt.stop_requested.is_set():
            log.info("%s: stopping before %s (the process is stopping)", flow, name)
            break
        progress.started(name)
        started = time.time()
        state = run(name, return_state=True)
        if state.is_completed():
            results[name] = steps.done(name, state.result(), started)
            progress.done(name, results[name])
        elif rt.stop_requested.is_set():  # interrupted at a safe point, not failed
            steps.stopped(name, started)
            progress.failed(name, "the process stopped during the run (the next run resumes)")
        else:
            failures[name] = str(state.message)
            steps.failed(name, failures[name], started)
            progress.failed(name, failures[name])
    return results, failures


def failed_tables(flow: str, failures: dict[str, str]) -> ArchiveError:
    """The error a flow run ends with when some of its tables failed."""
    first = next(iter(failures.values()))
    return ArchiveError(f"{flow} failed for {', '.join(sorted(failures))}: {first}")
