"""What the flows share: which errors are worth a retry, and per-table task options."""

from __future__ import annotations

import sqlite3
from typing import Any, ParamSpec, TypeVar

import sqlalchemy
from prefect import Task
from pyiceberg.exceptions import CommitFailedException

from k2.errors import PermanentError, StoreError, TransientError
from k2.flows.runtime import ArchiveRuntime

P = ParamSpec("P")
R = TypeVar("R")

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
