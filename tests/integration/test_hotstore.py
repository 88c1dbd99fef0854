"""The hot store in process: DDL, TTLs, the writer, candles, resume state, the data-dir lock."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from k2.errors import StoreLocked
from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.resume import last_sequence, load_resume
from k2.hotstore.store import DataDirLock
from k2.hotstore.writer import StoreWriter
from k2.ingest.repair import id_gap, window_gap
from k2.records import REPAIRED, UNRECOVERABLE, Reject, Source, Trade
from k2.settings import HotStoreSettings, WriterSettings
from tests.hot_support import assert_candles_equal, read_candles, read_silver

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).parent.parent / "fixtures"
# 00:10 UTC yesterday: trades a minute apart stay within one 5m, 15m, 30m, 1h and 1d window whatever
# the time of day the suite runs (an anchor "5 minutes ago" crossed window boundaries now and then),
# and the anchor is in the past even in the ten minutes after midnight.
NOW = ((time.time_ns() // 86_400_000_000_000 - 1) * 86_400 + 600) * 1_000_000_000


# `store`: a migrated chDB store per test, from tests/archive_support.py (a conftest plugin).


def trade(
    venue: str,
    tid: int,
    price: str,
    amount: str,
    ts: int,
    side: str = "buy",
    symbol: str = "BTC-USD",
) -> Trade:
    return Trade(
        venue,
        symbol,
        symbol.replace("-", "/"),
        tid,
        Decimal(price),
        Decimal(amount),
        side,
        ts,
        ts + 5,
        "BUY",
        b'{"raw":true}',
    )


def write(
    store: ClickHouseStore, batches: list[tuple[list[Trade], list[Trade]]], **settings: int
) -> StoreWriter:
    async def run() -> StoreWriter:
        writer = StoreWriter(store, WriterSettings(**settings), last_sequence(store))
        for received, accepted in batches:
            await writer.trades(received, accepted, "coinbase-1", Source.WS)
            await writer.flush()
        await writer.close()
        return writer

    return asyncio.run(run())


def test_ddl_applies_twice_and_records_versions(tmp_path: Path) -> None:
    s = ClickHouseStore.at(tmp_path / "hot")
    try:
        first = migrate.apply(s, HotStoreSettings())
        assert first == [
            f"{i:03d}_{n}.sql"
            for i, n in enumerate(
                [
                    "ingest",
                    "bronze",
                    "bronze_views",
                    "silver",
                    "silver_view",
                    "ohlcv",
                    "ohlcv_1m_mv",
                    "ohlcv_rollups",
                    "ops",
                    "ops_archive",
                    "gap_suspicious",
                    "ingest_source",
                    "bronze_views_source",
                    "bus_cuts",
                    "writer",
                    "bronze_writer",
                    "hot_expired",
                ],
                1,
            )
        ]
        assert migrate.apply(s, HotStoreSettings()) == []
        assert s.rows("SELECT count() FROM k2.schema_migrations")[0][0] == 17
        tables = {r[0] for r in s.rows("SELECT name FROM system.tables WHERE database = 'k2'")}
        expected = {
            "bronze_trades_binance",
            "bronze_trades_kraken",
            "bronze_trades_coinbase",
            "silver_trades",
            "feed_gaps",
            "rejects",
        } | {f"ohlcv_{tf}" for tf in ("1m", "5m", "15m", "30m", "1h", "1d")}
        assert expected <= tables
        assert {f"candles_{tf}" for tf in ("1m", "5m", "15m", "30m", "1h", "1d")} <= tables
    finally:
        s.close()


def test_a_store_made_before_the_typed_source_and_writer_upgrades_and_gains_a_venue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data directory from schema version 11 (bronze derived `source` from a `-rest` connection
    id; no Coinbase yet) upgrades at its next start: every venue's bronze, the old ones and the new
    one, takes the source the feed states."""
    old_texts = {
        p.name: p.read_text(encoding="utf-8") for p in (FIXTURES / "hotstore_v11").glob("*.sql")
    }
    old = [(v, n, old_texts.get(n, t)) for v, n, t in migrate.migrations() if v <= 11]
    s = ClickHouseStore.at(tmp_path / "hot")
    try:
        with monkeypatch.context() as m:
            m.setattr(migrate, "migrations", lambda: old)
            m.setattr(migrate, "VENUE_NAMES", ("binance", "kraken"))
            migrate.apply(s, HotStoreSettings())
        assert not s.rows("EXISTS TABLE k2.bronze_trades_coinbase")[0][0]
        assert migrate.apply(s, HotStoreSettings()) == [
            "012_ingest_source.sql",
            "013_bronze_views_source.sql",
            "014_bus_cuts.sql",
            "015_writer.sql",
            "016_bronze_writer.sql",
            "017_hot_expired.sql",
        ]

        def mine(venue: str, first: int) -> list[Trade]:
            return [trade(venue, first + i, "1", "1", NOW + i, symbol="BTC-USD") for i in range(2)]

        writer = StoreWriter(s, WriterSettings(), last_sequence(s))

        async def run() -> None:
            for venue in ("binance", "coinbase"):
                # the names would have said the opposite
                await writer.trades(*[mine(venue, 1)] * 2, f"{venue}-rest", Source.WS)
                await writer.trades(*[mine(venue, 10)] * 2, f"{venue}-7", Source.REST)
            await writer.close()

        asyncio.run(run())
        for venue in ("binance", "coinbase"):
            assert s.rows(
                f"SELECT trade_id, toString(source) FROM k2.bronze_trades_{venue} ORDER BY trade_id"
            ) == [(1, "ws"), (2, "ws"), (10, "rest"), (11, "rest")]
            # and every row names its writer (015, 016): the offload's marks are per writer
            assert s.rows(f"SELECT DISTINCT writer FROM k2.bronze_trades_{venue}") == [
                (writer.writer_id,)
            ]
        assert s.rows("SELECT DISTINCT writer FROM k2.silver_trades") == [(writer.writer_id,)]
        assert migrate.apply(s, HotStoreSettings()) == []  # and the next start changes nothing
        (views,) = s.rows(
            "SELECT count() FROM system.tables WHERE database = 'k2' "
            "AND name LIKE 'bronze_from_ingest_%' AND as_select LIKE '%-rest%'"
        )[0]
        assert views == 0
    finally:
        s.close()


def test_the_store_returns_freed_memory_promptly(store: ClickHouseStore) -> None:
    # jemalloc's default 5 s decay held 100-250 MB of freed pages under a firehose
    # (bench/ingest.py).
    stats = store.rows("SELECT stats FROM system.jemalloc_stats")[0][0]
    assert "opt.dirty_decay_ms: 250 " in stats


def test_trade_tables_have_no_ttl_and_the_rejects_ttl_follows_the_settings(
    tmp_path: Path,
) -> None:
    """Bronze and silver expire through archive/retention.py (only archived days), never by a TTL:
    a store from before loses its TTLs at the next start."""
    s = ClickHouseStore.at(tmp_path / "hot")
    try:
        migrate.apply(s, HotStoreSettings(bronze_ttl_days=3, silver_ttl_days=11))
        engines = dict(s.rows("SELECT name, engine_full FROM system.tables WHERE database = 'k2'"))
        assert " TTL " not in engines["bronze_trades_kraken"]
        assert " TTL " not in engines["silver_trades"]
        assert "toIntervalDay(11)" in engines["rejects"]
        for table in ("silver_trades", "bronze_trades_binance"):  # as an older K2 made them
            s.execute(f"ALTER TABLE k2.{table} MODIFY TTL toDateTime(ts_event) + INTERVAL 7 DAY")
        migrate.apply(s, HotStoreSettings(bronze_ttl_days=5, silver_ttl_days=40))
        engines = dict(s.rows("SELECT name, engine_full FROM system.tables WHERE database = 'k2'"))
        assert " TTL " not in engines["bronze_trades_binance"]
        assert " TTL " not in engines["silver_trades"]
        assert "toIntervalDay(40)" in engines["rejects"]
    finally:
        s.close()


def test_bronze_keeps_everything_silver_only_new_trades(store: ClickHouseStore) -> None:
    a, b, c = (trade("coinbase", i, "100.5", "2", NOW + i) for i in (1, 2, 3))
    dup = trade("coinbase", 2, "100.5", "2", NOW + 2)
    writer = write(store, [([a, b], [a, b]), ([dup, c], [c])])
    assert store.rows("SELECT count(), countIf(duplicate) FROM k2.bronze_trades_coinbase")[0] == (
        4,
        1,
    )
    silver = read_silver(store)
    assert sorted(k[2] for k in silver) == [1, 2, 3]
    assert (
        store.rows("SELECT toString(quote_amount) FROM k2.silver_trades WHERE trade_id = 1")[0][0]
        == "201"
    )
    seqs = [
        r[0]
        for r in store.rows("SELECT ingest_seq FROM k2.bronze_trades_coinbase ORDER BY ingest_seq")
    ]
    assert len(set(seqs)) == 4 and seqs == sorted(seqs) and seqs[0] >= NOW // 1000  # hybrid clock
    assert writer.stats.rows == {"bronze_trades_coinbase": 4, "silver_trades": 3}
    (raw,) = store.rows("SELECT raw FROM k2.bronze_trades_coinbase LIMIT 1")[0]
    assert raw in (b'{"raw":true}', '{"raw":true}')


def test_candles_open_close_by_time_then_id_across_batches_and_big_numbers(
    store: ClickHouseStore,
) -> None:
    t0 = NOW
    batches = [
        [trade("coinbase", 10, "100000.12345678", "123.45678912", t0 + 5_000_000_000)],
        # Same timestamp: the trade id decides open and close.
        [
            trade("coinbase", 12, "99999", "1", t0 + 1_000_000_000, "sell"),
            trade("coinbase", 11, "99998", "1", t0 + 1_000_000_000),
        ],
        # A late trade (backfilled) older than everything so far in the window: the new open.
        [trade("coinbase", 9, "0.0000123456", "1000000.5", t0 + 100)],
        # The next minute.
        [trade("coinbase", 13, "3", "1", t0 + 61_000_000_000, "sell")],
    ]
    write(store, [(b, b) for b in batches])
    store.execute("OPTIMIZE TABLE k2.ohlcv_1m FINAL")  # merging states must not change any candle
    silver = read_silver(store)
    # two 1m windows, one in each larger timeframe
    assert assert_candles_equal(store, silver) == 2 + 5
    c = read_candles(store, "1m")[("coinbase", "BTC/USD", t0 // 10**9)]
    assert c["open"] == Decimal("0.0000123456") and c["close"] == Decimal("100000.12345678")
    assert c["trade_count"] == 4 and c["taker_buy_volume"] == Decimal("1000124.95678912")
    # divideDecimal: a plain Decimal128 division overflows here and returns garbage.
    assert c["vwap"] == Decimal("12.544123481667751029") and c["low"] < c["vwap"] < c["high"]


def test_resume_state_cursors_recent_ids_pending_gaps_and_sequence(store: ClickHouseStore) -> None:
    binance = [
        trade("binance", i, "1", "1", NOW + i, symbol="BTCUSDT") for i in (100, 101, 103, 105)
    ]
    coinbase = [trade("coinbase", i, "1", "1", NOW + i) for i in (7, 9, 12)]
    pending = id_gap("binance", "BTCUSDT", 102, 104, NOW + 101, NOW + 105)
    repaired = id_gap("binance", "BTCUSDT", 50, 60, 0, 0)

    async def run() -> int:
        writer = StoreWriter(store, WriterSettings(), 0)
        # a sink gets one venue per call
        await writer.trades(binance, binance, "binance-1", Source.WS)
        await writer.trades(coinbase, coinbase, "coinbase-1", Source.WS)
        await writer.gap(pending)
        await writer.gap(repaired)
        await writer.gap(
            msgspec.structs.replace(repaired, outcome=REPAIRED, resolved_at=time.time_ns())
        )
        await writer.gap(window_gap("coinbase", "BTC-USD", 12, NOW))
        await writer.reject(Reject("kraken", "bad", b"{", time.time_ns(), "kraken-1"))
        await writer.close()
        return writer._last_seq

    last = asyncio.run(run())
    assert last_sequence(store) == last
    state = load_resume(store, recent_ids=2)
    assert state.cursors["binance"]["BTCUSDT"].high == 105
    assert state.cursors["binance"]["BTCUSDT"].high_ts == NOW + 105
    assert sorted(state.cursors["coinbase"]["BTC-USD"].recent) == [
        9,
        12,
    ]  # newest 2, windowed venue only
    assert state.cursors["binance"]["BTCUSDT"].recent == []
    (resumed,) = state.pending["binance"]  # the repaired one is not pending
    gap, holes = resumed
    assert gap.gap_id == pending.gap_id and holes == [(102, 102), (104, 104)] and gap.missing == 2
    (window,) = state.pending["coinbase"]
    assert window.gap.kind == "window" and window.gap.ts_from == NOW
    assert store.rows("SELECT count() FROM k2.rejects")[0][0] == 1


def test_a_crash_recovery_records_holes_in_silver_that_no_gap_record_covers(
    store: ClickHouseStore,
) -> None:
    from k2.hotstore import recovery

    # What a crash can leave: trade 108 stored, but the record of the gap it revealed (106..107)
    # lost with the next batch. 102..103 is recorded and pending; 95..98 recorded and given up on.
    ids = (90, 91, 92, 93, 94, 99, 100, 101, 104, 105, 108, 109)
    binance = [trade("binance", i, "1", "1", NOW + i, symbol="BTCUSDT") for i in ids]
    coinbase = [trade("coinbase", i, "1", "1", NOW + i) for i in (7, 9, 12)]  # ids may skip here
    # A quiet symbol: its trade 5 an hour older than anything else and written ten minutes of
    # ingest before the rest; its trade 8, written last, skipped two ids.
    quiet = [
        trade("binance", i, "1", "1", NOW + (200 if i == 8 else -3600 * 10**9), symbol="LTCUSDT")
        for i in (5, 8)
    ]
    # An old hole (3) with no record, written long before the crash: not what a crash can cause.
    old = [
        trade("binance", i, "1", "1", NOW - 7200 * 10**9 + i, symbol="ETHUSDT") for i in (1, 2, 4)
    ]
    pending = id_gap("binance", "BTCUSDT", 102, 103, NOW + 101, NOW + 104)
    given_up = msgspec.structs.replace(
        id_gap("binance", "BTCUSDT", 95, 98, NOW + 94, NOW + 99),
        outcome=UNRECOVERABLE,
        resolved_at=NOW + 200,
    )

    async def run() -> None:
        writer = StoreWriter(store, WriterSettings(), 0)
        await writer.trades(quiet[:1] + old, quiet[:1] + old, "binance-1", Source.WS)
        await writer.flush()
        writer._last_seq += 600 * 1_000_000  # ten minutes of ingest later
        await writer.trades(binance + quiet[1:], binance + quiet[1:], "binance-1", Source.WS)
        await writer.trades(coinbase, coinbase, "coinbase-1", Source.WS)
        await writer.gap(pending)
        await writer.gap(given_up)
        await writer.close()

    asyncio.run(run())
    assert [r.gap.gap_id for r in load_resume(store, recent_ids=10).pending["binance"]] == [
        pending.gap_id
    ]
    assert recovery.recover(store)["gaps_recorded"] == 2
    # the next k2 up: the found holes are pending gaps now
    state = load_resume(store, recent_ids=10)
    resumed = {r.gap.gap_id: r for r in state.pending["binance"]}
    assert set(resumed) == {pending.gap_id, "binance:BTCUSDT:106-107", "binance:LTCUSDT:6-7"}
    assert resumed[pending.gap_id].holes == [(102, 103)]
    found = resumed["binance:BTCUSDT:106-107"]
    assert found.holes == [(106, 107)] and found.gap.outcome == "pending"
    assert (found.gap.ts_from, found.gap.ts_to, found.gap.missing) == (NOW + 105, NOW + 108, 2)
    quiet_gap = resumed[
        "binance:LTCUSDT:6-7"
    ].gap  # below the span written recently: looked up by key
    assert (quiet_gap.ts_from, quiet_gap.ts_to) == (NOW - 3600 * 10**9, NOW + 200)
    # its ids are not contiguous: repaired by time window instead
    assert "coinbase" not in state.pending
    # recorded once: a second recovery finds none
    assert recovery.recover(store).get("gaps_recorded") is None


def test_writer_backpressure_blocks_feeds_until_written(store: ClickHouseStore) -> None:
    async def run() -> float:
        writer = StoreWriter(
            store, WriterSettings(batch_rows=10**6, batch_interval_ms=200, max_pending_rows=50), 0
        )
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        start = time.monotonic()
        for i in range(5):  # each call of 50 rows fills the budget: it must wait for a flush
            batch = [trade("coinbase", i * 100 + j, "1", "1", NOW + j) for j in range(50)]
            await writer.trades(batch, batch, "c-1", Source.WS)
        elapsed = time.monotonic() - start
        stop.set()
        await task
        await writer.close()
        assert writer.stats.backpressure_s > 0 and writer.stats.pending == 0
        return elapsed

    assert asyncio.run(run()) >= 0.15  # waited for at least one flush interval
    assert store.rows("SELECT count() FROM k2.silver_trades")[0][0] == 250


def test_data_dir_lock_names_its_holder(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire("k2 up", api_url="http://127.0.0.1:1234")
    second = DataDirLock(tmp_path)
    assert second.is_held() and second.holder()["api_url"] == "http://127.0.0.1:1234"
    with pytest.raises(StoreLocked, match=r"in use by k2 up \(pid \d+\)"):
        second.acquire("k2 up")
    first.release()
    assert not second.is_held()
    second.acquire("k2 trades")
    second.release()


def test_recovery_after_an_unclean_stop_rebuilds_candles_and_bronze_from_silver(
    store: ClickHouseStore, tmp_path: Path
) -> None:
    from k2.hotstore import recovery

    trades = [
        trade("coinbase", i, str(100 + i % 7), "1.5", NOW + i * 7_000_000_000) for i in range(1, 60)
    ]
    write(store, [(trades, trades)])
    # What a kill -9 mid-insert can leave: a rollup that missed the last batch, bronze rows that
    # never landed, and a 1m candle counting a trade silver never got.
    store.execute("DELETE FROM k2.ohlcv_5m WHERE window_start >= toDateTime(0)")
    store.execute("DELETE FROM k2.bronze_trades_coinbase WHERE trade_id > 50")
    store.execute(
        "INSERT INTO k2.ohlcv_1m SELECT 'coinbase', 'BTC-USD', "
        f"toStartOfMinute(toDateTime({NOW // 10**9}, 'UTC')), "
        "argMinState(toDecimal128('1', 18), (now64(9), toUInt64(1))), "
        "toDecimal128('1', 18), toDecimal128('1', 18), "
        "argMaxState(toDecimal128('1', 18), (now64(9), toUInt64(1))), "
        "toDecimal128('9', 18), toDecimal128('9', 18), 1, toDecimal128('0', 18)"
    )
    hot = tmp_path / "hot"
    assert not recovery.was_clean(hot)
    done = recovery.recover(store)
    assert done["bronze_trades_coinbase"] == 9
    assert assert_candles_equal(store, read_silver(store)) > 0
    recovered = store.rows(
        "SELECT count() FROM k2.bronze_trades_coinbase WHERE conn_id = 'recovered' AND raw = ''"
    )[0][0]
    assert recovered == 9
    recovery.mark_clean(hot)
    assert recovery.was_clean(hot) and not recovery.was_clean(hot)  # read once per start
