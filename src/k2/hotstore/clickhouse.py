"""The hot store on clickhouse-connect: one client for both shapes, the engine chosen by a URL.

- `chdb:///path/to/hot`: chDB, ClickHouse inside this process (the embedded shape);
- `http(s)://user:password@host:8123`: a ClickHouse server (the cluster shape).

The DDL, the queries and the insert settings are the same on both. chDB allows one process per
data path and one call at a time on a connection, so every call runs on a single owner thread,
in order; callers on other threads block until their call has run, and async callers await
`submit(...)`. Errors come back as K2's: StoreRefused (the data), StoreUnavailable (the store),
or StoreError (neither could be told).

A failpoint, for measuring what a store outage does (bench/faults.py): while the file named by
the environment variable K2_FAILPOINT_STORE_DOWN exists, every call fails as an unreachable
store's would. Unset (always, outside such a harness) it costs nothing.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pyarrow as pa

from k2.errors import ConfigError, StoreError, StoreRefused, StoreUnavailable
from k2.hotstore.store import HotStore
from k2.settings import HotStoreSettings

T = TypeVar("T")
FAILPOINT_STORE_DOWN = os.environ.get("K2_FAILPOINT_STORE_DOWN", "")
JEMALLOC_CONF = "dirty_decay_ms:250"

# ClickHouse error codes that mean "these rows cannot be stored": retrying them cannot help.
REFUSED_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND (Decimal value is too big)
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        407,  # DECIMAL_OVERFLOW
        469,  # VIOLATED_CONSTRAINT
    }
)
# ...and codes that mean "the store cannot take anything now": wait and retry.
UNAVAILABLE_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        164,  # READONLY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS
        425,  # SYSTEM_ERROR
        1002,  # UNKNOWN_EXCEPTION (errno: I/O)
    }
)


def classify(err: BaseException, what: str) -> StoreError:
    """Turn a clickhouse-connect (or engine) error into StoreRefused,
    StoreUnavailable or StoreError."""
    from clickhouse_connect.driver.exceptions import (
        DatabaseError,
        OperationalError,
        ProgrammingError,
    )

    message = f"{what}: {err}"
    code = getattr(err, "code", None)
    if isinstance(err, OperationalError | ProgrammingError | ConnectionError | TimeoutError):
        return StoreUnavailable(message)  # unreachable, or the client is closed
    if isinstance(err, DatabaseError) and code is not None:
        if code in REFUSED_CODES:
            return StoreRefused(message)
        if code in UNAVAILABLE_CODES or "No space left on device" in str(err):
            return StoreUnavailable(message)
    return StoreError(message)


DEFAULT_CACHE_MB: int = HotStoreSettings.model_fields["embedded_cache_mb"].default


def chdb_url(path: Path) -> str:
    return f"chdb://{path.resolve()}"


def store_url(settings: HotStoreSettings, data_dir: Path) -> str:
    """The hot store's URL: the setting, else chDB in the data directory's `hot/`."""
    return settings.url.get_secret_value() if settings.url else chdb_url(data_dir / "hot")


def redacted(url: str) -> str:
    """`url` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def open_store(settings: HotStoreSettings, data_dir: Path) -> HotStore:
    """The one way K2 opens its hot store: the engine is the URL's."""
    return ClickHouseStore(store_url(settings, data_dir), settings.embedded_cache_mb)


def chdb_options(cache_mb: int) -> dict[str, int]:
    """chDB's start-up options: ClickHouse server settings for the engine inside this process.
    Its caches of marks and primary indexes default to a server's 5 GiB each; bound them."""
    size = cache_mb * 1024 * 1024
    return {
        "mark_cache_size": size,
        "primary_index_cache_size": size,
        "index_mark_cache_size": size,
    }


class ClickHouseStore:
    """The HotStore on one clickhouse-connect client, owned by one thread."""

    def __init__(self, url: str, cache_mb: int = DEFAULT_CACHE_MB) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("chdb", "http", "https"):
            raise ConfigError(
                "hot store URL (setting hotstore.url) must start with chdb://, http:// or "
                f"https://, got {redacted(url)!r}"
            )
        self.url = redacted(url)  # for messages: never the password
        self.embedded = parts.scheme == "chdb"
        self.path = Path(parts.path) if self.embedded else None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="k2-store")
        self._thread: threading.Thread | None = None
        self._client = self._executor.submit(self._open, url, cache_mb).result()

    @classmethod
    def at(cls, path: Path) -> ClickHouseStore:
        """chDB in directory `path`."""
        return cls(chdb_url(path))

    def _open(self, url: str, cache_mb: int) -> Any:
        # ClickHouse's allocator (jemalloc) keeps freed pages for 5 s by default. Every batch insert
        # frees tens of MB, so under load that held 100-250 MB more than ClickHouse was using.
        # 250 ms returns them promptly, from jemalloc's background thread (ClickHouse turns it
        # on); 0 (purge on every free) cost a fifth of the ingest throughput here. jemalloc reads
        # this once, as chDB loads; an operator's own JE_MALLOC_CONF wins, and ours is not left for
        # child processes (the Prefect server) to inherit.
        self._thread = threading.current_thread()
        ours = self.embedded and "JE_MALLOC_CONF" not in os.environ
        if ours:
            os.environ["JE_MALLOC_CONF"] = JEMALLOC_CONF
        try:
            # With a chdb:// URL this loads chDB (~300 MB), on this thread.
            import clickhouse_connect

            engine: dict[str, Any] = (
                {"chdb_options": chdb_options(cache_mb)} if self.embedded else {}
            )
            return clickhouse_connect.get_client(dsn=url, settings={"async_insert": 0}, **engine)
        except Exception as err:
            raise classify(err, f"cannot open the hot store at {self.url}") from err
        finally:
            if ours:
                del os.environ["JE_MALLOC_CONF"]

    # -- threading --------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run `fn(*args)` on the owner thread; `fn` may call this store's methods directly."""
        return self._executor.submit(fn, *args)

    def _run(self, fn: Callable[[], T], what: str) -> T:
        def call() -> T:
            if FAILPOINT_STORE_DOWN and os.path.exists(FAILPOINT_STORE_DOWN):
                raise StoreUnavailable(f"{what}: the store is down (K2_FAILPOINT_STORE_DOWN)")
            try:
                return fn()
            except StoreError:
                raise
            except Exception as err:  # the client's and the engine's own types: give callers ours
                raise classify(err, what) from err

        if threading.current_thread() is self._thread:
            return call()
        try:
            return self._executor.submit(call).result()
        except RuntimeError as err:  # the executor was shut down: the store is closed
            raise StoreUnavailable(f"{what}: the hot store is closed") from err

    # -- the HotStore interface -------------------------------------------------------------------
    def execute(
        self,
        sql: str,
        params: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self._run(
            lambda: self._client.command(sql, parameters=params, settings=settings), _what(sql)
        )

    def query_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        return self._run(
            lambda: self._client.query_arrow(sql, parameters=params, use_strings=True), _what(sql)
        )

    def query_bytes(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        return self._run(
            lambda: bytes(self._client.raw_query(sql, parameters=params, fmt=fmt)), _what(sql)
        )

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        table = self.query_arrow(sql, params)
        columns = [c.to_pylist() for c in table.columns]
        return list(zip(*columns, strict=True)) if columns else []

    def insert_arrow(
        self, table: str, data: pa.Table, settings: dict[str, Any] | None = None
    ) -> int:
        def run() -> int:
            self._client.insert_arrow(table, data, settings=settings)
            return int(data.num_rows)

        return self._run(run, f"insert into {table}")

    def ping(self) -> bool:
        """Whether the store answers a trivial query right now."""
        try:
            self._run(lambda: self._client.command("SELECT 1"), "ping")
        except StoreError:
            return False
        return True

    def close(self) -> None:
        if self._thread is not None:
            try:
                self._run(self._client.close, "close")
            except StoreError:
                pass
        self._executor.shutdown(wait=True)


def _what(sql: str) -> str:
    return f"in: {' '.join(sql.split())[:200]}"
