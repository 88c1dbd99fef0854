"""The writer against a real chDB that refuses rows, and one whose disk is full."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.writer import StoreWriter
from k2.ingest.repair import id_gap
from k2.records import Source, Trade
from k2.settings import HotStoreSettings, WriterSettings
from tests.hot_support import fill_up, small_filesystem

pytestmark = pytest.mark.integration
NOW = time.time_ns() - 3_600_000_000_000


def trades(n: int, first: int = 1, price: str = "100.5") -> list[Trade]:
    return [
        Trade(
            "binance",
            "BTCUSDT",
            "BTC/USDT",
            i,
            Decimal(price),
            Decimal("0.25"),
            "buy",
            NOW + i,
            NOW + i,
            "false",
            f'{{"t":{i}}}'.encode(),
        )
        for i in range(first, first + n)
    ]


def count(store: ClickHouseStore, sql: str) -> int:
    return int(store.rows(sql)[0][0])


def test_rows_the_store_refuses_go_to_rejects_and_every_other_row_is_written(
    store: ClickHouseStore,
) -> None:
    # Values no adapter would emit (they bypass the limits):
    # the store's own refusal is what is tested.
    batch = trades(5000)
    batch[1234] = trades(1, 1235, price="123456789012345678901234.5")[
        0
    ]  # too big for Decimal(38, 18)
    batch[4321] = trades(1, 4322, price="1E+30")[0]

    async def run() -> StoreWriter:
        writer = StoreWriter(store, WriterSettings(), 0)
        await writer.trades(batch, batch, "binance-1", Source.WS)
        started = time.monotonic()
        assert await writer.flush()
        assert time.monotonic() - started < 20  # isolated by halving, not retried forever
        await writer.close()  # the rejects go with the next batch
        return writer

    writer = asyncio.run(run())
    assert writer.stats.refused_rows == 2 and writer.stats.store_down_since == 0
    assert count(store, "SELECT count() FROM k2.silver_trades") == 4998
    assert count(store, "SELECT count() FROM k2.bronze_trades_binance") == 4998
    assert count(store, "SELECT count() FROM k2.silver_trades WHERE trade_id IN (1235, 4322)") == 0
    rejects = store.rows("SELECT reason, raw, conn_id FROM k2.rejects ORDER BY raw")
    assert [(r[1], r[2]) for r in rejects] == [
        ('{"t":1235}', "binance-1"),
        ('{"t":4322}', "binance-1"),
    ]
    assert all(
        r[0].startswith("the hot store refused this trade:") and "Decimal" in r[0] for r in rejects
    )


def test_a_trade_that_cannot_be_converted_is_rejected_not_a_crash(store: ClickHouseStore) -> None:
    batch = trades(10)
    batch[3] = Trade(
        "binance",
        "BTCUSDT",
        "BTC/USDT",
        4,
        Decimal(1),
        Decimal(1),
        "buy",
        10**20,
        NOW,
        "false",
        b"{}",
    )

    async def run() -> StoreWriter:
        writer = StoreWriter(store, WriterSettings(), 0)
        await writer.trades(batch, batch, "binance-1", Source.WS)
        await writer.close()
        return writer

    writer = asyncio.run(run())
    assert writer.stats.refused_rows == 1 and writer.stats.pending == 0
    assert count(store, "SELECT count() FROM k2.silver_trades") == 9
    ((reason,),) = store.rows("SELECT reason FROM k2.rejects")
    assert reason.startswith("cannot be converted for the hot store: OverflowError")


def test_a_store_with_a_full_disk_is_waited_for_and_nothing_is_lost_or_doubled(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "small", 256) as root:
        store = ClickHouseStore.at(root / "hot")
        try:
            migrate.apply(store, HotStoreSettings())

            async def run() -> StoreWriter:
                writer = StoreWriter(
                    store, WriterSettings(batch_rows=2000, batch_interval_ms=50), 0
                )
                await writer.trades(trades(1000), trades(1000), "binance-1", Source.WS)
                assert await writer.flush()
                ballast = fill_up(root)
                stop = asyncio.Event()
                task = asyncio.create_task(writer.run(stop))
                later = trades(3000, first=1001)
                await writer.trades(later, later, "binance-1", Source.WS)
                await writer.gap(id_gap("binance", "BTCUSDT", 5000, 5001, NOW, NOW))
                for _ in range(100):  # the store says it cannot take them: the writer waits
                    await asyncio.sleep(0.1)
                    if writer.stats.store_down_since and writer.stats.flush_failures >= 2:
                        break
                assert (
                    writer.stats.store_down_since > 0
                    and "NOT_ENOUGH_SPACE" in writer.stats.store_error
                )
                # nothing given up on
                assert writer.stats.pending == 3000 and writer.stats.refused_rows == 0
                ballast.unlink()  # the disk has room again
                for _ in range(200):
                    await asyncio.sleep(0.1)
                    if writer.stats.pending == 0 and not writer.buffered():
                        break
                stop.set()
                await task
                await writer.close()
                return writer

            writer = asyncio.run(run())
            assert writer.stats.store_down_since == 0 and writer.stats.store_error == ""
            rows = store.rows(
                "SELECT count(), uniqExact(trade_id), min(trade_id), max(trade_id) "
                "FROM k2.silver_trades"
            )
            assert rows == [
                (4000, 4000, 1, 4000)
            ]  # every trade once: a retry never wrote a slice twice
            assert count(store, "SELECT count() FROM k2.bronze_trades_binance") == 4000
            assert count(store, "SELECT count() FROM k2.feed_gaps") == 1
        finally:
            store.close()


def test_close_gives_up_at_its_deadline_when_the_store_stays_unavailable(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", 256) as root:
        store = ClickHouseStore.at(root / "hot")
        try:
            migrate.apply(store, HotStoreSettings())
            fill_up(root)

            async def run() -> tuple[int, float]:
                writer = StoreWriter(store, WriterSettings(), 0)
                await writer.trades(trades(500), trades(500), "binance-1", Source.WS)
                started = time.monotonic()
                left = await writer.close(deadline=started + 3)
                return left, time.monotonic() - started

            left, took = asyncio.run(run())
            assert left == 500 and took <= 3.5
        finally:
            store.close()
