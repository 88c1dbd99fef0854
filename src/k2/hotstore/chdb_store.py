"""The embedded hot store: chDB (ClickHouse in process), owned by one thread.

chDB allows one process per data path and no other call on a connection while an insert
streams, so every call runs on a single owner thread, in order. Callers on other threads
block until their call has run; async callers await `submit(...)`.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.ipc as ipc

from k2.errors import StoreError

T = TypeVar("T")
JEMALLOC_CONF = "dirty_decay_ms:250"


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)


def _param(value: Any) -> Any:
    """chDB takes array parameters as ClickHouse literals (['a','b']); scalars as they are."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(_literal(v) for v in value) + "]"
    return value


class ChdbStore:
    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="k2-chdb")
        self._thread: threading.Thread | None = None
        self._session = self._executor.submit(self._open, str(path)).result()
        self.path = path

    def _open(self, path: str) -> Any:
        # ClickHouse's allocator (jemalloc) keeps freed pages for 5 s by default. Every batch insert
        # frees tens of MB, so under load that held 100-250 MB more than ClickHouse was using.
        # 250 ms returns them promptly, from jemalloc's background thread (ClickHouse turns it
        # on); 0 (purge on every free) cost a fifth of the ingest throughput here. jemalloc reads
        # this once, as chDB loads; an operator's own JE_MALLOC_CONF wins, and ours is not left for
        # child processes (the Prefect server) to inherit.
        ours = "JE_MALLOC_CONF" not in os.environ
        if ours:
            os.environ["JE_MALLOC_CONF"] = JEMALLOC_CONF
        try:
            from chdb.session import Session  # imported on the owner thread; costs ~300 MB
        finally:
            if ours:
                del os.environ["JE_MALLOC_CONF"]

        self._thread = threading.current_thread()
        return Session(path)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run `fn(*args)` on the owner thread; `fn` may call this store's methods directly."""
        return self._executor.submit(fn, *args)

    def _run(self, fn: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return fn()
        return self._executor.submit(fn).result()

    def _query(self, sql: str, fmt: str, params: dict[str, Any] | None) -> Any:
        try:
            if not params:
                return self._session.query(sql, fmt)
            return self._session.query(sql, fmt, params={k: _param(v) for k, v in params.items()})
        except Exception as err:  # chDB raises its own error types: give callers ours
            raise StoreError(f"{err} (in: {sql[:200]})") from err

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        self._run(lambda: self._query(sql, "CSV", params))

    def query_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        def run() -> pa.Table:
            data = self._query(sql, "ArrowStream", params).bytes()
            if not data:
                return pa.table({})
            return ipc.open_stream(data).read_all()

        return self._run(run)

    def query_bytes(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        return self._run(lambda: bytes(self._query(sql, fmt, params).bytes()))

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        table = self.query_arrow(sql, params)
        columns = [c.to_pylist() for c in table.columns]
        return list(zip(*columns, strict=True)) if columns else []

    def insert_arrow(self, table: str, data: pa.Table) -> int:
        def run() -> int:
            sink = io.BytesIO()
            with ipc.new_stream(sink, data.schema) as writer:
                writer.write_table(data)
            try:
                with self._session.send_insert(f"INSERT INTO {table}", "ArrowStream") as ins:
                    ins.append(sink.getvalue())
                    ins.finish()
            except Exception as err:
                raise StoreError(f"insert into {table} failed: {err}") from err
            return data.num_rows

        return self._run(run)

    def close(self) -> None:
        def run() -> None:
            self._session.close()

        if self._thread is not None:
            self._run(run)
        self._executor.shutdown(wait=True)
