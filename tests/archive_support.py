"""Fixtures for the archive tests: a populated hot store, a lake on SQLite or PostgreSQL with
local disk or S3, and the two sides read in the same form for comparison."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from k2.archive.lake import Lake
from k2.archive.tables import ArchiveTable
from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.schema import TIMEFRAME_BY_NAME
from k2.hotstore.writer import StoreWriter
from k2.records import Source, Trade
from k2.settings import ArchiveSettings, HotStoreSettings, WriterSettings

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
S3_KEY = "k2-test"  # moto takes any keys; K2 insists on explicit ones
MARKETS = (
    ("binance", "BTCUSDT", "BTC/USDT"),
    ("binance", "ETHUSDT", "ETH/USDT"),
    ("kraken", "BTC/USD", "BTC/USD"),
    ("coinbase", "BTC-USD", "BTC/USD"),
)


def postgres_available() -> str | None:
    """Return why PostgreSQL cannot be used here, or None if it can."""
    try:
        import psycopg2

        psycopg2.connect(
            host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3
        ).close()
    except Exception as err:  # noqa: BLE001 - any failure to connect means: skip, saying why
        return f"no PostgreSQL at 127.0.0.1:5432 ({err})"
    return None


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint on loopback (moto's server, as pyiceberg's own tests use)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("moto[server] (a dev dependency) is not installed")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"k2-test-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["sqlite", "postgresql+s3"])
def lake_target(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Archive settings for the two shapes' catalog and warehouse: SQLite and local disk (the
    embedded default), or a fresh PostgreSQL database and a fresh bucket on loopback S3 (the
    cluster's)."""
    if request.param == "sqlite":
        yield {}
        return
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg2

    target: dict[str, Any] = {}
    if request.param.endswith("+s3"):
        endpoint = request.getfixturevalue("s3_endpoint")
        target["warehouse"] = f"s3://{make_bucket(endpoint)}/warehouse"
        target["s3"] = {
            "endpoint": endpoint,
            "access_key_id": S3_KEY,
            "secret_access_key": S3_KEY,
        }
    name = f"k2_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield target | {"catalog_uri": f"{PG}/{name}"}
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClickHouseStore]:
    s = ClickHouseStore.at(tmp_path / "hot")
    migrate.apply(s, HotStoreSettings())
    yield s
    s.close()


def archive_settings(lake_target: dict[str, Any], **extra: Any) -> ArchiveSettings:
    return ArchiveSettings.model_validate(lake_target | extra)


@pytest.fixture
def lake(tmp_path: Path, lake_target: dict[str, Any]) -> Iterator[Lake]:
    lk = Lake(archive_settings(lake_target), tmp_path)
    yield lk
    lk.close()


class Market:
    """Writes synthetic trades for a few markets through the real writer (so bronze, silver and
    the candles all follow from one insert, as in production)."""

    def __init__(self, store: ClickHouseStore, start_ns: int | None = None) -> None:
        self.store = store
        self.next_id = dict.fromkeys(MARKETS, 1000)
        # 3 h ago, on the hour
        self.start = start_ns or (time.time_ns() // 3_600_000_000_000 - 3) * 3_600_000_000_000
        self.writer = StoreWriter(store, WriterSettings(), 0)

    def trades(
        self, market: tuple[str, str, str], n: int, start_ns: int, step_ns: int
    ) -> list[Trade]:
        venue, symbol, canonical = market
        out = []
        for i in range(n):
            tid = self.next_id[market]
            self.next_id[market] += 1
            price = Decimal(100 + (tid * 7) % 13) + Decimal(tid % 100) / 1000
            out.append(
                Trade(
                    venue,
                    symbol,
                    canonical,
                    tid,
                    price,
                    Decimal("0.5") + Decimal(tid % 9) / 100,
                    "buy" if tid % 3 else "sell",
                    start_ns + i * step_ns,
                    time.time_ns(),
                    "true",
                    f'{{"t":{tid}}}'.encode(),
                )
            )
        return out

    def write(
        self,
        per_market: int,
        start_ns: int | None = None,
        step_ns: int = 20_000_000_000,
        duplicates: int = 0,
    ) -> int:
        """Write `per_market` trades per market (plus `duplicates` re-sent ones to bronze)."""
        start = self.start if start_ns is None else start_ns

        async def run() -> int:
            total = 0
            for market in MARKETS:
                batch = self.trades(market, per_market, start, step_ns)
                again = [
                    msgspec.structs.replace(t) for t in batch[:duplicates]
                ]  # re-received: new objects
                await self.writer.trades(batch + again, batch, f"{market[0]}-1", Source.WS)
                total += len(batch)
            await self.writer.flush()
            return total

        return asyncio.run(run())


def hot_rows(
    store: ClickHouseStore, spec: ArchiveTable, now: float | None = None
) -> list[tuple[Any, ...]]:
    """The hot side of `spec` in archive form: all rows (trade tables), closed windows (candles)."""
    if spec.is_candles:
        assert spec.timeframe is not None
        step = TIMEFRAME_BY_NAME[spec.timeframe].seconds
        closed = int(now or time.time()) // step * step
        data = store.query_arrow(spec.select_windows(0, closed))
        key = ("exchange", "canonical_symbol", "window_start")
    else:
        data = store.query_arrow(spec.select_range("1"))
        key = ("ingest_seq",)
    return _rows(data, key)


def archive_rows(lake: Lake, spec: ArchiveTable) -> list[tuple[Any, ...]]:
    data = lake.table(spec).scan().to_arrow()
    key = ("exchange", "canonical_symbol", "window_start") if spec.is_candles else ("ingest_seq",)
    return _rows(data, key)


def _rows(data: Any, key: tuple[str, ...]) -> list[tuple[Any, ...]]:
    if data.num_rows == 0:
        return []
    names = sorted(data.column_names)
    data = data.select(names).sort_by([(k, "ascending") for k in key])
    return [tuple(r[n] for n in names) for r in data.to_pylist()]
