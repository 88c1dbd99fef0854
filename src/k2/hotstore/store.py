"""The hot store seam: one small interface (clickhouse.py implements it for chDB and for a
ClickHouse server), and the data-directory lock that makes one process its owner."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from k2.errors import InputError, StoreLocked

T = TypeVar("T")


class HotStore(Protocol):
    """Execute SQL; read results as Arrow; insert Arrow tables. Implementations are thread-safe."""

    def execute(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None: ...

    def query_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table: ...

    def query_bytes(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        """Run `sql` and return its result encoded in ClickHouse format `fmt`
        (e.g. Parquet, TSV)."""
        ...

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]: ...

    def insert_arrow(
        self, table: str, data: pa.Table, settings: dict[str, Any] | None = None
    ) -> int:
        """Insert `data` into `table` (database-qualified), committed when this returns."""
        ...

    def ping(self) -> bool:
        """Whether the store answers right now."""
        ...

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run `fn(*args)` in the background (with store access); return its future."""
        ...

    def close(self) -> None: ...


def check_data_dir(data_dir: Path) -> None:
    """Make sure `data_dir` is a directory K2 can write in (created if missing), or say why not.

    Reading needs it writable too: its lock lives there, and chDB writes in its store to open it.
    """
    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(
            f"data directory {data_dir} is not a directory (setting data_dir, --data-dir)"
        )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"cannot create data directory {data_dir}: {err.strerror or err}"
        ) from None
    for path in (data_dir, data_dir / "hot"):
        if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
            raise InputError(
                f"{path} is read-only: K2 must write in its data directory even to read it "
                "(its lock file; chDB opens its store for writing); copy it somewhere "
                "writable and pass --data-dir"
            )


class DataDirLock:
    """An exclusive lock on a data directory, naming its holder for anyone who finds it taken."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "k2.lock"
        self._fd: int | None = None

    def acquire(self, role: str, api_url: str | None = None) -> None:
        """Take the lock or raise StoreLocked saying who holds it (InputError:
        not a usable directory)."""
        check_data_dir(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputError(
                f"cannot use data directory {self.path.parent}: {err.strerror or err}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = self.holder() or {}
            who = f"{holder.get('role', 'another k2 process')} (pid {holder.get('pid', '?')})"
            raise StoreLocked(
                f"data directory {self.path.parent} is in use by {who}; "
                "stop it first, or use another --data-dir"
            ) from None
        self._fd = fd
        self.update(role=role, api_url=api_url)

    def update(self, **info: Any) -> None:
        assert self._fd is not None
        current = (
            {"pid": os.getpid()}
            | (self.holder() or {})
            | {k: v for k, v in info.items() if v is not None}
        )
        current["pid"] = os.getpid()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(current).encode(), 0)

    def holder(self) -> dict[str, Any] | None:
        """Return what the holder wrote about itself (pid, role, api_url), if anything."""
        try:
            found = json.loads(self.path.read_text() or "null")
            return found if isinstance(found, dict) else None
        except (OSError, ValueError):
            return None

    def is_held(self) -> bool:
        """Return True if another process holds the lock right now."""
        if self._fd is not None:
            return False
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
