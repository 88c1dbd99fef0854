"""One read path over hot and cold (query/tiers.py), streamed exports and replay (query/stream.py,
k2 export, k2 replay): the same rows, in the same order and text, whichever tier holds them,
while the seam between the tiers moves."""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from k2.archive.lake import Lake
from k2.archive.offload import offload_table
from k2.archive.retention import expire_hot
from k2.archive.tables import BY_NAME, TABLES
from k2.cli.export import play
from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.expired import expired_days
from k2.hotstore.schema import TIMEFRAMES
from k2.query import candle_tiers, cold_files, frames, stream, tiers
from k2.query.frames import CANDLE_SCHEMA, TRADE_SCHEMA
from k2.settings import HotStoreSettings
from tests.archive_support import Market, archive_settings
from tests.support import k2

DAY_NS = 86_400 * 10**9
HOUR_NS = 3_600 * 10**9
RETENTION = HotStoreSettings(bronze_ttl_days=1, silver_ttl_days=1)
SILVER = ["silver_trades"]  # reads serve trades from silver: the one table to expire here
OLD_DAYS = (6, 5, 4, 3)  # days back with trades that retention will empty, one after another


def offload_all(store: ClickHouseStore, lake: Lake) -> None:
    for spec in TABLES:
        offload_table(store, lake, spec, chunk_rows=100_000, lookback_minutes=10 * 24 * 60)


@pytest.fixture
def tiered(tmp_path: Path) -> Iterator[tuple[ClickHouseStore, Lake, Market, int]]:
    """A hot store and an archive on disk with 4 markets' trades on 4 old days and the last
    hours, all archived; nothing expired yet. Yields (store, lake, market, now rounded to the
    hour)."""
    store = ClickHouseStore.at(tmp_path / "hot")
    migrate.apply(store, HotStoreSettings())
    lake = Lake(archive_settings({}), tmp_path)
    now_hour = time.time_ns() // HOUR_NS * HOUR_NS
    market = Market(store)
    for back in OLD_DAYS:  # spread over each day: 12 trades per market, 2 h apart
        market.write(12, start_ns=now_hour - back * DAY_NS, step_ns=2 * HOUR_NS)
    market.write(30, start_ns=now_hour - 3 * HOUR_NS, step_ns=5 * 10**9)
    offload_all(store, lake)
    yield store, lake, market, now_hour
    lake.close()
    store.close()


def assert_hot_lacks_expired_days(store: ClickHouseStore, total: int) -> None:
    """Hot holds the recent trades and none of a day retention emptied."""
    hot = tiers.hot_trades(store, tiers.Filter())
    days = {t.value // DAY_NS for t in hot.column("ts_event")}
    assert 4 * 30 <= len(hot) < total and not days & expired_days(store, "silver_trades")


def text(table: pa.Table) -> list[dict[str, object]]:
    return frames.rows(table)


def test_reads_are_exact_while_the_seam_moves(
    tiered: tuple[ClickHouseStore, Lake, Market, int],
) -> None:
    """Retention empties the old days one after another while reads run: every read returns
    every trade once, in the same order and text as when hot held them all."""
    store, lake, market, now_hour = tiered
    everything = tiers.Filter()
    truth = tiers.hot_trades(store, everything)
    assert len(truth) == 4 * (4 * 12 + 30)
    old_day = tiers.Filter(start_ns=now_hour - 5 * DAY_NS, end_ns=now_hour - 4 * DAY_NS)
    old_truth = tiers.hot_trades(store, old_day)
    btc = tiers.Filter("binance", "BTC/USDT")
    btc_truth = tiers.hot_trades(store, btc)
    candle_truth = {
        tf.name: text(candle_tiers.hot_candles(store, tf.name, everything)) for tf in TIMEFRAMES
    }

    done = threading.Event()
    failures: list[BaseException] = []

    def expire() -> None:
        try:
            # each step's "now" is a day later, so one more old day passes the 1-day retention
            for step in range(len(OLD_DAYS)):
                now = (now_hour - (OLD_DAYS[0] - 2 - step) * DAY_NS) / 1e9
                expire_hot(store, lake, RETENTION, now=now, tables=SILVER)
                time.sleep(0.3)
        except BaseException as err:  # noqa: BLE001 (reported by the test's thread)
            failures.append(err)
        finally:
            done.set()

    thread = threading.Thread(target=expire)
    thread.start()
    reads = 0
    try:
        while not done.is_set() or reads < 3:
            assert tiers.trades_between(store, lake, everything).equals(truth)
            assert tiers.trades(store, lake, btc, limit=40).equals(
                btc_truth.slice(len(btc_truth) - 40)
            )
            assert tiers.trades(store, lake, old_day, limit=1000).equals(old_truth)
            reads += 1
    finally:
        thread.join()
    assert not failures, failures
    assert reads >= 3

    # Afterwards: the old days are only in the archive, and reads still equal the truth.
    assert len(expired_days(store, "silver_trades")) == len(OLD_DAYS)
    assert_hot_lacks_expired_days(store, len(truth))
    assert tiers.trades_between(store, lake, everything).equals(truth)
    assert text(tiers.trades(store, lake, everything, limit=100)) == text(
        truth.slice(len(truth) - 100)
    )
    assert text(tiers.trades(store, lake, old_day, limit=5)) == text(
        old_truth.slice(len(old_truth) - 5)
    )
    for tf in TIMEFRAMES:  # candles stay in hot for good
        assert (
            text(candle_tiers.candles_between(store, lake, tf.name, everything))
            == candle_truth[tf.name]
        )

    # A late trade into an emptied day: hot holds it until it is archived and expired again, and
    # reads have it (once) all along.
    market.write(1, start_ns=now_hour - 5 * DAY_NS + 7 * 10**9)
    late_truth = tiers.trades_between(store, lake, everything)
    assert len(late_truth) == len(truth) + 4
    offload_all(store, lake)
    assert tiers.trades_between(store, lake, everything).equals(late_truth)
    expire_hot(store, lake, RETENTION, tables=SILVER)
    assert_hot_lacks_expired_days(store, len(late_truth))
    assert tiers.trades_between(store, lake, everything).equals(late_truth)


def test_both_tiers_give_the_same_rows_and_text(
    tiered: tuple[ClickHouseStore, Lake, Market, int],
) -> None:
    """The same trades and candles read from hot and from the archive are equal, value for value
    and as text; decimals follow one rule (no exponent, no trailing zeros)."""
    store, lake, _, _ = tiered
    f = tiers.Filter()
    hot, cold = tiers.hot_trades(store, f), tiers.cold_trades(lake, f)
    assert hot.equals(cold) and text(hot) == text(cold)
    # the archive read by chDB's Parquet reader (query/cold_files.py) gives the same rows, to the
    # nanosecond at the filter's edges
    table = lake.table(BY_NAME["silver_trades"])
    assert cold_files.read(store, table.scan(), ["trade_id"], "1", {}) is not None
    assert tiers.cold_trades(lake, f, store).equals(cold)
    ns = pc.cast(hot.column("ts_event"), pa.int64()).to_pylist()
    edges = tiers.Filter("binance", "BTC/USDT", ns[len(ns) // 3], ns[2 * len(ns) // 3])
    engine = tiers.cold_trades(lake, edges, store)
    assert len(engine) and engine.equals(tiers.cold_trades(lake, edges))
    assert engine.equals(tiers.hot_trades(store, edges))
    # the engine's read is planned from each file's bounds: fewer files than the snapshot holds,
    # and the same rows as pyiceberg's plan for every venue and symbol, and across the days
    listed = cold_files.FILES.of(table, ["exchange", "canonical_symbol", "ts_event_ns"])
    assert listed is not None and len(listed) > 1
    planned = cold_files.plan(
        store,
        table,
        {"exchange": "binance", "canonical_symbol": "BTC/USDT"},
        {"ts_event_ns": (edges.start_ns, edges.end_ns)},
    )
    assert planned is not None and 0 < len(planned) < len(listed)
    markets = {(r["exchange"], r["canonical_symbol"]) for r in hot.to_pylist()}
    assert len(markets) > 1
    for venue, symbol in sorted(markets):
        for lo, hi in ((None, ns[len(ns) // 2]), (ns[len(ns) // 2], None)):
            each = tiers.Filter(venue, symbol, lo, hi)
            assert tiers.cold_trades(lake, each, store).equals(tiers.cold_trades(lake, each))
    closed = tiers.Filter(end_ns=time.time_ns() // HOUR_NS * HOUR_NS)
    for tf in ("1m", "1h"):
        hot_c = candle_tiers.hot_candles(store, tf, closed)
        assert len(hot_c) and hot_c.equals(candle_tiers.cold_candles(lake, tf, closed))
    row = text(hot)[0]
    assert row["price"] == "106" and row["amount"] == "0.51"  # 106.000..., 0.510... stored
    assert str(row["ts_event"]).endswith("Z") and len(str(row["ts_event"])) == 30


def test_decimal_text_rule() -> None:
    from decimal import Decimal

    from k2.records import decimal_text

    values = ["60000.14", "100", "0", "0.000000000000000001", "0.00000001", "1E-7", "123.4500"]
    column = pa.array([Decimal(v) for v in values], frames.DECIMAL)
    expected = ["60000.14", "100", "0", "0.000000000000000001", "0.00000001", "0.0000001", "123.45"]
    assert frames.decimal_text(column).to_pylist() == expected
    assert [decimal_text(Decimal(v)) for v in values] == expected


def test_candles_come_from_the_archive_before_the_first_window_hot_holds(
    tiered: tuple[ClickHouseStore, Lake, Market, int],
) -> None:
    """A hot store that holds candles only from some day on (started next to an older archive):
    the archive serves the windows before the first one hot holds, the hot store the rest."""
    store, lake, _, now_hour = tiered
    f = tiers.Filter(end_ns=now_hour)  # closed windows: those the archive has
    truth = {tf: candle_tiers.hot_candles(store, tf, f) for tf in ("1m", "1h", "1d")}
    for tf in truth:  # hot keeps the last two days only
        store.execute(
            f"DELETE FROM k2.ohlcv_{tf} WHERE window_start < fromUnixTimestamp64Nano({{t:Int64}})",
            {"t": now_hour - 2 * DAY_NS},
        )
    for tf, rows in truth.items():
        assert len(candle_tiers.hot_candles(store, tf, f)) < len(rows)
        assert candle_tiers.candles_between(store, lake, tf, f).equals(rows), tf
    kraken = tiers.Filter("kraken", "BTC/USD", end_ns=now_hour)
    latest = candle_tiers.candles(store, lake, "1h", kraken, 40)
    want = truth["1h"].filter(pa.compute.equal(truth["1h"].column("exchange"), "kraken"))
    assert len(want) > 40 and latest.equals(want.slice(len(want) - 40))


def test_streamed_exports_hold_every_row_once_in_order(
    tiered: tuple[ClickHouseStore, Lake, Market, int],
) -> None:
    """Cut into many small windows, across both tiers, every format carries the whole range."""
    store, lake, _, now_hour = tiered
    start, end = now_hour - 7 * DAY_NS, now_hour + HOUR_NS
    # Windows follow the rate; the burst of the last hours after quiet days is narrowed by the
    # hot store's count before it is read.
    recent = list(stream.trade_chunks(store, lake, tiers.Filter(), start, end, target_rows=7))
    assert len(recent) > 20 and max(len(c.rows) for c in recent) <= 14
    expire_hot(store, lake, RETENTION, tables=SILVER)  # the old days from the archive only
    truth = tiers.trades_between(store, lake, tiers.Filter(start_ns=start, end_ns=end))
    chunks = list(stream.trade_chunks(store, lake, tiers.Filter(), start, end, target_rows=20))
    assert len(chunks) > 10
    assert pa.concat_tables([c.rows for c in chunks]).equals(truth)
    # Empty stretches are skipped, not walked: from 1970, a few windows more.
    since_1970 = list(stream.trade_chunks(store, lake, tiers.Filter(), 0, end, target_rows=20))
    assert len(since_1970) <= len(chunks) + 4
    assert pa.concat_tables([c.rows for c in since_1970]).equals(truth)
    candles = list(stream.candle_chunks(store, lake, "1h", tiers.Filter(), 0, end))
    assert len(candles) <= 10
    assert pa.concat_tables([c.rows for c in candles]).equals(
        candle_tiers.candles_between(store, lake, "1h", tiers.Filter(start_ns=0, end_ns=end))
    )

    def encoded(fmt: stream.Format) -> bytes:
        pieces = iter(chunks)
        return b"".join(stream.encode(pieces, fmt, TRADE_SCHEMA))

    assert pq.read_table(io.BytesIO(encoded(stream.Format.parquet))).equals(truth)
    assert pa.ipc.open_stream(encoded(stream.Format.arrow)).read_all().equals(truth)
    lines = encoded(stream.Format.jsonl).decode().splitlines()
    assert [json.loads(x) for x in lines] == text(truth)
    rows = list(csv.DictReader(io.StringIO(encoded(stream.Format.csv).decode())))
    assert rows == [{k: str(v) for k, v in r.items()} for r in text(truth)]
    empty = stream.encode(iter([]), stream.Format.csv, TRADE_SCHEMA)
    assert b"".join(empty) == (",".join(TRADE_SCHEMA.names) + "\n").encode()


def test_replayed_trades_build_the_stored_candles(
    tiered: tuple[ClickHouseStore, Lake, Market, int],
) -> None:
    """A consumer of replay (merged across venues, in exchange-time order) builds candles equal
    to the stored ones; at a speed, trades are paced by their event times."""
    from decimal import Decimal

    store, lake, _, now_hour = tiered
    expire_hot(store, lake, RETENTION, tables=SILVER)
    start, end = now_hour - 7 * DAY_NS, now_hour - 2 * HOUR_NS  # closed hours only
    out = io.BytesIO()
    chunks = stream.trade_chunks(store, lake, tiers.Filter(), start, end, target_rows=40)
    count = play(chunks, out, stream.Format.jsonl, None)
    trades = [json.loads(x) for x in out.getvalue().splitlines()]
    assert count == len(trades) > 4 * 4 * 12
    assert [t["ts_event"] for t in trades] == sorted(t["ts_event"] for t in trades)
    built: dict[tuple[str, str, str], dict[str, object]] = {}
    for t in trades:  # 1h candles, as a consumer would build them
        key = (t["exchange"], t["canonical_symbol"], t["ts_event"][:13] + ":00:00.000000000Z")
        p, a = Decimal(t["price"]), Decimal(t["amount"])
        c = built.setdefault(key, {"open": p, "high": p, "low": p, "volume": Decimal(0), "n": 0})
        c.update(high=max(c["high"], p), low=min(c["low"], p), close=p)  # type: ignore[type-var]
        c["volume"] += a  # type: ignore[operator]
        c["n"] += 1  # type: ignore[operator]
    stored = candle_tiers.candles_between(
        store, lake, "1h", tiers.Filter(start_ns=start, end_ns=end)
    )
    assert len(stored) == len(built)
    for row in text(stored):
        c = built[(row["exchange"], row["canonical_symbol"], row["window_start"])]
        assert (Decimal(row["open"]), Decimal(row["high"]), Decimal(row["low"])) == (
            c["open"],
            c["high"],
            c["low"],
        )
        assert Decimal(row["close"]) == c["close"] and Decimal(row["volume"]) == c["volume"]
        assert row["trade_count"] == c["n"]

    # Paced: 3 trades 2 s apart at speed 100 are written 20 ms apart (a fake clock).
    three = tiers.hot_trades(store, tiers.Filter("binance", "BTC/USDT")).slice(0, 3)
    clock = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(round(s, 6))
        clock[0] += s

    paced = io.BytesIO()
    play(iter([stream.Chunk(three, 0)]), paced, stream.Format.jsonl, 100, lambda: clock[0], sleep)
    gap_s = (three.column("ts_event")[1].value - three.column("ts_event")[0].value) / 1e9
    assert waits == [round(gap_s / 100, 6)] * 2 and len(paced.getvalue().splitlines()) == 3


def test_k2_export_and_replay_on_a_stopped_data_directory(tmp_path: Path) -> None:
    """The commands as a user runs them: a Parquet export across both tiers with its summary
    line, a CSV of candles, replay to stdout; mistakes are one line."""
    store = ClickHouseStore.at(tmp_path / "hot")
    migrate.apply(store, HotStoreSettings())
    lake = Lake(archive_settings({}), tmp_path)
    now_hour = time.time_ns() // HOUR_NS * HOUR_NS
    market = Market(store)
    market.write(12, start_ns=now_hour - 4 * DAY_NS, step_ns=2 * HOUR_NS)
    market.write(10, start_ns=now_hour - 2 * HOUR_NS, step_ns=10**9)
    offload_all(store, lake)
    expire_hot(store, lake, RETENTION, tables=SILVER)
    truth = tiers.trades_between(store, lake, tiers.Filter())
    lake.close()
    store.close()

    out = tmp_path / "trades.parquet"
    run = k2("export", "--from", "5d", "--out", str(out), "--data-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert pq.read_table(out).equals(truth)
    assert f"k2 export: {len(truth)} trades to {out}" in run.stderr.decode()

    candles_csv = tmp_path / "c.csv"
    run = k2(
        "export",
        "--from",
        "5d",
        "--timeframe",
        "1h",
        "--venue",
        "kraken",
        "--format",
        "csv",
        "--out",
        str(candles_csv),
        "--data-dir",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(candles_csv.open()))
    assert (
        rows
        and {r["exchange"] for r in rows} == {"kraken"}
        and list(rows[0]) == CANDLE_SCHEMA.names
    )

    run = k2("replay", "--from", "5d", "--symbol", "BTCUSDT", "--data-dir", str(tmp_path))
    assert run.returncode == 0, run.stderr
    replayed = [json.loads(x) for x in run.stdout.splitlines()]
    btc = [r for r in text(truth) if r["symbol"] == "BTCUSDT"]
    assert replayed == btc

    for args, message in (
        (("export", "--from", "1d", "--out", str(tmp_path)), "is a directory"),
        (("export", "--from", "1d", "--to", "2d", "--out", str(out)), "must be after --from"),
        (("replay", "--from", "1d", "--speed", "0"), "speed must be a positive number"),
        (("export", "--from", "1d", "--timeframe", "2m", "--out", str(out)), "unknown timeframe"),
    ):
        run = k2(*args, "--data-dir", str(tmp_path))
        err = run.stderr.decode()
        assert run.returncode == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_api_pages_back_through_both_tiers_and_answers_problems(tmp_path: Path) -> None:
    """/api/v1/trades pages back with an opaque cursor across the seam, unmoved by trades that
    arrive meanwhile; errors are problem details; the schema lists the v1 paths."""
    from fastapi.testclient import TestClient

    from k2.api.app import create_app
    from k2.embedded import Embedded
    from k2.instruments import load_instruments
    from k2.settings import load_settings

    emb = Embedded(load_settings(None, data_dir=tmp_path), load_instruments())
    emb.open_store()
    assert emb.store is not None and emb.lake is not None
    try:
        now_hour = time.time_ns() // HOUR_NS * HOUR_NS
        market = Market(emb.store)
        market.write(5, start_ns=now_hour - 4 * DAY_NS, step_ns=HOUR_NS)
        market.write(6, start_ns=now_hour - 2 * HOUR_NS, step_ns=10**9)
        offload_all(emb.store, emb.lake)
        expire_hot(emb.store, emb.lake, RETENTION, tables=SILVER)
        truth = text(tiers.trades_between(emb.store, emb.lake, tiers.Filter()))
        api = TestClient(create_app(emb), base_url="http://127.0.0.1:8000")

        pages: list[list[dict[str, object]]] = []
        params: dict[str, object] = {"limit": 7}
        while True:
            body = api.get("/api/v1/trades", params=params).json()
            pages.append(body["rows"])
            if len(pages) == 2:  # trades arriving meanwhile are newer: later pages do not move
                market.write(3, start_ns=now_hour + 10**9)
            if body["next"] is None:
                break
            params = {"limit": 7, "cursor": body["next"]}
        assert [r for page in reversed(pages) for r in page] == truth
        assert len(pages) == -(-len(truth) // 7)

        # candles page back the same way (several markets share each window: the order is total)
        every = text(candle_tiers.candles_between(emb.store, emb.lake, "1h", tiers.Filter()))
        candle_pages: list[list[dict[str, object]]] = []
        params = {"timeframe": "1h", "limit": 5}
        while True:
            body = api.get("/api/v1/candles", params=params).json()
            candle_pages.append(body["rows"])
            if body["next"] is None:
                break
            params = {"timeframe": "1h", "limit": 5, "cursor": body["next"]}
        assert [r for page in reversed(candle_pages) for r in page] == every
        trades_cursor = api.get("/api/v1/trades", params={"limit": 1}).json()["next"]
        misused = api.get("/api/v1/candles", params={"cursor": trades_cursor})
        assert misused.status_code == 400 and "cursor is not one" in misused.json()["detail"]

        for query, status, detail in (
            ({"limit": 0}, 422, "limit: Input should be greater than or equal to 1"),
            ({"venue": "nope"}, 400, "unknown venue 'nope'"),
            ({"cursor": "bm9wZQ"}, 400, "cursor is not one this API gave"),
        ):
            resp = api.get("/api/v1/trades", params=query)
            assert resp.status_code == status
            assert resp.headers["content-type"] == "application/problem+json"
            problem = resp.json()
            assert problem["status"] == status and detail in problem["detail"], problem
            assert set(problem) == {"type", "title", "status", "detail"}
        paths = api.get("/openapi.json").json()["paths"]
        assert {"/api/v1/trades", "/api/v1/export/trades", "/api/v1/candles"} <= set(paths)
        assert not any(p.startswith("/api/") and not p.startswith("/api/v1/") for p in paths)
        old_path = api.get("/api/trades", params={"limit": 3})  # before v1: still answered
        assert old_path.json() == api.get("/api/v1/trades", params={"limit": 3}).json()
    finally:
        emb.lake.close()
        assert emb._owner is not None
        emb._owner.close()


def test_symbols_count_both_tiers_and_days_say_what_is_complete(
    tiered: tuple[ClickHouseStore, Lake, Market, int],
) -> None:
    from k2.query import coverage

    store, lake, market, now_hour = tiered
    instruments = {
        "binance": ["BTCUSDT", "ETHUSDT"],
        "kraken": ["BTC/USD"],
        "coinbase": ["BTC-USD"],
    }
    before = coverage.symbols(store, lake, instruments)
    expire_hot(store, lake, RETENTION, tables=SILVER)
    market.write(2, start_ns=now_hour + 10**9)  # not archived yet
    truth = tiers.trades_between(store, lake, tiers.Filter())
    after = coverage.symbols(store, lake, instruments)
    assert [r["trades"] for r in before] == [4 * 12 + 30] * 4
    assert [r["trades"] for r in after] == [4 * 12 + 30 + 2] * 4
    btc = next(r for r in after if r["symbol"] == "BTCUSDT")
    btc_rows = text(truth.filter(pa.compute.equal(truth.column("symbol"), "BTCUSDT")))
    assert (btc["first_trade"], btc["last_trade"]) == (
        btc_rows[0]["ts_event"],
        btc_rows[-1]["ts_event"],
    )
    assert tuple(btc) == coverage.SYMBOL_KEYS

    old = now_hour - 5 * DAY_NS + HOUR_NS  # a pending gap on an emptied day of kraken's BTC/USD
    store.execute(
        "INSERT INTO k2.feed_gaps (gap_id, exchange, symbol, kind, first_id, last_id, ts_from, "
        "ts_to, detected_at, resolved_at, outcome, missing, recovered, version) VALUES "
        "('g1', 'kraken', 'BTC/USD', 'ids', 5, 9, fromUnixTimestamp64Nano({t:Int64}), "
        "fromUnixTimestamp64Nano({t:Int64}), now64(9), toDateTime64(0, 9), 'pending', 5, 0, 1)",
        {"t": old},
    )
    rows = coverage.days(store, lake, instruments, tiers.Filter(start_ns=now_hour - 7 * DAY_NS))
    by = {(r["exchange"], r["canonical_symbol"], r["day"]): r for r in rows}
    day = time.strftime("%Y-%m-%d", time.gmtime(old / 1e9))
    today = time.strftime("%Y-%m-%d", time.gmtime(now_hour / 1e9))
    gap = by["kraken", "BTC/USD", day]
    assert (gap["status"], gap["open_gaps"], gap["complete"], gap["tiers"]) == (
        "gaps open",
        1,
        False,
        "archive",
    )
    done = by["binance", "BTC/USDT", day]
    assert (done["status"], done["complete"], done["tiers"], done["hot_trades"]) == (
        "complete",
        True,
        "archive",
        0,
    )
    fresh = by["coinbase", "BTC/USD", today]
    assert fresh["status"] == "archiving" and fresh["hot_trades"] == fresh["archived_trades"] + 2
    offload_all(store, lake)
    rows = coverage.days(store, lake, instruments, tiers.Filter(start_ns=now_hour - DAY_NS))
    assert all(r["status"] == "complete" and r["tiers"] == "hot+archive" for r in rows), rows
    assert list(rows[0]) == list(coverage.DAY_KEYS)
