"""The Iceberg archive: exactly-once offload (whatever crashes), maintenance, reconcile."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.expressions import EqualTo

from k2.archive import maintenance as mnt
from k2.archive import marks, offload, reconcile
from k2.archive.lake import Lake, watermark
from k2.archive.offload import POINTS, offload_table
from k2.archive.reconcile import reconcile_table
from k2.archive.tables import BY_NAME, TABLES, WATERMARK, WRITER_MARKS
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.writer import StoreWriter
from k2.settings import ArchiveSettings, WriterSettings
from tests.archive_support import Market, archive_rows, archive_settings, hot_rows

pytestmark = pytest.mark.integration
TRADE_TABLES = [t for t in TABLES if not t.is_candles]
CANDLE_TABLES = [t for t in TABLES if t.is_candles]


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the offload catches it."""


def offload_all(
    store: ClickHouseStore, lake: Lake, chunk_rows: int = 100_000, **kw: object
) -> dict[str, int]:
    return {
        t.name: offload_table(
            store, lake, t, chunk_rows=chunk_rows, lookback_minutes=180, **kw
        ).rows  # type: ignore[arg-type]
        for t in TABLES
    }


def assert_archive_equals_hot(store: ClickHouseStore, lake: Lake) -> None:
    for spec in TABLES:
        hot, cold = hot_rows(store, spec), archive_rows(lake, spec)
        assert len(cold) == len(hot), f"{spec.name}: archive {len(cold)} rows, hot {len(hot)}"
        assert cold == hot, f"{spec.name}: archive differs from hot"


def test_offload_of_all_ten_tables_equals_hot_exactly(store: ClickHouseStore, lake: Lake) -> None:
    market = Market(store)
    market.write(120, duplicates=3)  # duplicates reach bronze, not silver
    rows = offload_all(store, lake, chunk_rows=100)  # several chunks, each its own commit
    assert rows["silver_trades"] == 480 and rows["bronze_trades_binance"] == 246
    assert all(rows[t.name] > 0 for t in CANDLE_TABLES[:4])
    assert_archive_equals_hot(store, lake)
    silver = lake.table(BY_NAME["silver_trades"])
    assert (
        len(silver.snapshots()) >= 5
        and watermark(silver) == store.rows("SELECT max(ingest_seq) FROM k2.silver_trades")[0][0]
    )
    assert silver.metadata.properties["write.parquet.compression-codec"] == "zstd"
    assert (
        str(silver.spec().fields[0].transform) == "day"
        and str(BY_NAME["ohlcv_1m"].partition_spec().fields[0].transform) == "month"
    )
    # A second run finds nothing new (the watermark is read back from the table itself); candle
    # tables re-archive their lookback windows, which leaves them exactly as they were.
    again = offload_all(store, lake)
    assert all(again[t.name] == 0 for t in TRADE_TABLES)
    assert_archive_equals_hot(store, lake)


def test_types_are_exact_in_the_archive(store: ClickHouseStore, lake: Lake) -> None:
    Market(store).write(5)
    offload_all(store, lake)
    schema = lake.table(BY_NAME["silver_trades"]).schema()
    assert (
        str(schema.find_type("price")) == "decimal(38, 18)"
        and str(schema.find_type("ts_event")) == "timestamptz"
    )
    hot_ns = sorted(
        r[0] for r in store.rows("SELECT toUnixTimestamp64Nano(ts_event) FROM k2.silver_trades")
    )
    cold_ns = sorted(
        lake.table(BY_NAME["silver_trades"]).scan().to_arrow().column("ts_event_ns").to_pylist()
    )
    assert hot_ns == cold_ns  # nanoseconds survive exactly


@pytest.mark.slow
def test_crash_at_every_point_across_many_runs_leaves_the_archive_exact(
    store: ClickHouseStore, lake: Lake
) -> None:
    rng = random.Random(7)
    market = Market(store)
    crashes = dict.fromkeys(POINTS, 0)
    # on S3 (moto, an HTTP server in Python: slow) every point crashes twice instead of four times
    runs = 8 if lake.warehouse.startswith("s3://") else 16
    for run in range(runs):
        market.write(rng.randint(5, 30), start_ns=market.start + run * 60_000_000_000)
        point, nth = POINTS[run % len(POINTS)], rng.randint(1, 3)
        seen = 0

        def checkpoint(table: str, at: str, point: str = point, nth: int = nth) -> None:
            nonlocal seen
            if at == point:
                seen += 1
                if seen == nth:
                    raise Crash(f"{table} at {at}")

        try:
            offload_all(store, lake, chunk_rows=rng.choice([40, 120, 5000]), checkpoint=checkpoint)
        except Crash:
            crashes[point] += 1
        if run % 3 == 2:  # sometimes the rerun comes later, after more trades
            offload_all(store, lake, chunk_rows=rng.choice([40, 5000]))
            assert_archive_equals_hot(store, lake)
    offload_all(store, lake)
    assert_archive_equals_hot(store, lake)
    assert all(crashes[p] > 0 for p in POINTS), crashes
    # Crashes after files were written left orphans somewhere; removing them keeps every row.
    removed = 0
    for spec in TABLES:
        result = mnt.MaintenanceResult(spec.name)
        mnt.remove_orphans(
            lake.table(spec), ArchiveSettings(orphan_min_age_hours=0), result, time.time()
        )
        removed += result.orphans_removed
    assert removed > 0
    assert_archive_equals_hot(store, lake)


KILL = """
import json, os, sys
from pathlib import Path
from typing import Any
from k2.hotstore.clickhouse import ClickHouseStore
from k2.archive.lake import Lake
from k2.archive.offload import offload_table
from k2.archive.tables import BY_NAME
from k2.settings import ArchiveSettings
point, data = sys.argv[1], Path(sys.argv[2])
store = ClickHouseStore.at(data / "hot")
lake = Lake(ArchiveSettings.model_validate(json.loads(sys.argv[3])), data)
def die(table, at):
    if at == point:
        os._exit(137)  # like kill -9: no cleanup, no flush, nothing
offload_table(
    store, lake, BY_NAME["silver_trades"], chunk_rows=50, lookback_minutes=0, checkpoint=die
)
os._exit(0)
"""


@pytest.mark.parametrize("point", ["files_written", "committed"])
def test_a_killed_offload_process_reruns_to_the_exact_archive(
    tmp_path: Path, lake_target: dict[str, Any], point: str
) -> None:
    store = ClickHouseStore.at(tmp_path / "hot")
    from k2.hotstore import migrate
    from k2.settings import HotStoreSettings

    migrate.apply(store, HotStoreSettings())
    Market(store).write(60)
    store.close()
    args = [sys.executable, "-c", KILL.format(), point, str(tmp_path), json.dumps(lake_target)]
    assert subprocess.run(args, timeout=120, check=False).returncode == 137
    store = ClickHouseStore.at(tmp_path / "hot")
    lake = Lake(archive_settings(lake_target), tmp_path)
    try:
        spec = BY_NAME["silver_trades"]
        offload_table(store, lake, spec, chunk_rows=50, lookback_minutes=0)
        assert archive_rows(lake, spec) == hot_rows(store, spec)
    finally:
        lake.close()
        store.close()


def test_trade_chunks_are_bounded_by_bytes_as_well_as_rows(
    store: ClickHouseStore, lake: Lake
) -> None:
    Market(store).write(60)
    per_row = {
        name: offload._row_bytes(store, name) for name in ("silver_trades", "bronze_trades_binance")
    }
    assert per_row["bronze_trades_binance"] > per_row["silver_trades"] > 1  # raw JSON weighs
    for name in per_row:
        spec = BY_NAME[name]
        rows = hot_rows(store, spec)
        # room for about 10 rows a chunk: the row bound (a million) never binds
        result = offload_table(
            store,
            lake,
            spec,
            chunk_rows=1_000_000,
            chunk_bytes=10 * per_row[name],
            lookback_minutes=0,
        )
        assert result.rows == len(rows) and result.commits >= len(rows) // 10 - 1
        assert archive_rows(lake, spec) == rows


def test_late_trades_and_late_candle_corrections_arrive(store: ClickHouseStore, lake: Lake) -> None:
    market = Market(store)
    market.write(30)
    offload_all(store, lake)
    one_minute = archive_rows(lake, BY_NAME["ohlcv_1m"])
    # A trade backfilled after its minute was archived: it lands in silver with an old event time.
    market.write(1, start_ns=market.start + 5_000_000_000)
    rows = offload_all(store, lake)
    assert rows["silver_trades"] == 4 and rows["ohlcv_1m"] > 0
    assert_archive_equals_hot(store, lake)
    corrected = archive_rows(lake, BY_NAME["ohlcv_1m"])
    # updated in place, not added
    assert corrected != one_minute and len(corrected) == len(one_minute)


def test_candles_are_archived_only_once_their_window_closed(
    store: ClickHouseStore, lake: Lake
) -> None:
    # The next minute: still open when the offload runs, however long it takes to start (this
    # minute would close under a slow machine's feet).
    minute = int(time.time()) // 60 * 60 + 60
    market = Market(store)
    market.write(10)  # three hours ago: closed windows
    market.write(5, start_ns=minute * 10**9, step_ns=1_000_000_000)
    offload_all(store, lake)
    assert time.time() < minute + 60, "the offload took over a minute: the window closed"
    starts = {
        r[sorted(CANDLE_TABLES[0].schema.column_names).index("window_start")].timestamp()
        for r in archive_rows(lake, BY_NAME["ohlcv_1m"])
    }
    assert starts and max(starts) < minute  # the open minute is not in the archive
    assert (
        store.rows(
            f"SELECT count() FROM k2.candles_1m WHERE window_start >= toDateTime({minute}, 'UTC')"
        )[0][0]
        > 0
    )
    assert_archive_equals_hot(store, lake)  # the closed windows, exactly


def test_a_fresh_hot_store_never_deletes_archived_candles(
    tmp_path: Path, lake_target: dict[str, Any]
) -> None:
    from k2.hotstore import migrate
    from k2.settings import HotStoreSettings

    first = ClickHouseStore.at(tmp_path / "a")
    migrate.apply(first, HotStoreSettings())
    lake = Lake(archive_settings(lake_target), tmp_path)
    market = Market(first)
    market.write(30)
    offload_all(first, lake)
    before = archive_rows(lake, BY_NAME["ohlcv_1m"])
    first.close()
    second = ClickHouseStore.at(tmp_path / "b")  # a new data directory pointed at the same archive
    migrate.apply(second, HotStoreSettings())
    try:
        later = Market(second, start_ns=market.start + 2 * 3_600_000_000_000)
        later.write(10)
        offload_all(second, lake)
        after = archive_rows(lake, BY_NAME["ohlcv_1m"])
        assert set(before) <= set(after) and len(after) > len(before)
    finally:
        second.close()
        lake.close()


def test_maintenance_compacts_expires_and_removes_orphans_keeping_every_row(
    store: ClickHouseStore, lake: Lake, tmp_path: Path
) -> None:
    market = Market(store)
    for i in range(4):  # many small commits: many small files per day partition
        market.write(20, start_ns=market.start + i * 600_000_000_000)
        offload_all(store, lake, chunk_rows=40)
    spec = BY_NAME["silver_trades"]
    table = lake.table(spec)
    before_rows, before_files, mark = (
        archive_rows(lake, spec),
        len(table.inspect.data_files()),
        watermark(table),
    )
    stray = (
        Path(table.location().removeprefix("file://")) / "data" / "stray.parquet"
        if table.location().startswith("file://")
        else None
    )
    if stray is not None:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"not referenced by anything")
        os.utime(stray, (time.time() - 7200, time.time() - 7200))
    settings = ArchiveSettings(
        small_file_mb=64, snapshot_max_age_days=1, snapshot_min_keep=2, orphan_min_age_hours=1
    )
    result = mnt.maintain_table(lake, spec, settings, now=time.time() + 3 * 86400)
    table = lake.table(spec)
    assert result.partitions_compacted >= 1 and result.files_after < before_files
    assert archive_rows(lake, spec) == before_rows == hot_rows(store, spec)
    assert watermark(table) == mark and table.current_snapshot().summary.additional_properties[
        WATERMARK
    ] == str(mark)
    assert result.snapshots_expired > 0 and len(table.snapshots()) == 2
    if stray is not None:
        assert result.orphans_removed >= 1 and not stray.exists()
    # Every file the table refers to is still there, and ClickHouse reads it (another process:
    # stateless chDB may read any path).
    check = (
        "import chdb, sys; print(chdb.query(f\"SELECT count() FROM icebergLocal('{sys.argv[1]}', "
        "SETTINGS iceberg_metadata_file_path = '{sys.argv[2]}')\", 'CSV'))"
    )
    if table.location().startswith("file://"):
        location = table.location().removeprefix("file://")
        relative = table.metadata_location.removeprefix(table.location() + "/")
        # chDB reads only under its working directory: from "/", that is any absolute path.
        out = subprocess.run(
            [sys.executable, "-c", check, location, relative],
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
            check=False,
        )
        assert out.stdout.strip() == str(len(before_rows)), out.stderr[-500:]
    offload_all(store, lake)  # and the archive takes new commits after maintenance
    assert_archive_equals_hot(store, lake)


def test_an_offload_after_compaction_rewrites_no_compacted_candles(
    store: ClickHouseStore, lake: Lake
) -> None:
    """Each offload replaces the candle windows from its last watermark minus the lookback on,
    rewriting every file that holds rows there. Compaction leaves those windows in their own
    files, so the offload after it reads and rewrites none of what compaction wrote (before, it
    rewrote the partition's whole compacted file after every maintenance run)."""
    hour = 3_600_000_000_000
    now_h = time.time_ns() // hour * hour
    market = Market(store, start_ns=now_h - 30 * hour)
    spec = BY_NAME["ohlcv_1m"]
    for start in (now_h - 30 * hour, now_h - 26 * hour, now_h - 3 * hour):
        market.write(60, start_ns=start, step_ns=120_000_000_000)  # 2 h of windows each
        offload_table(store, lake, spec, chunk_rows=100_000, lookback_minutes=180)
    before = {f["file_path"] for f in lake.table(spec).inspect.data_files().to_pylist()}
    result = mnt.maintain_table(lake, spec, ArchiveSettings(small_file_mb=64), now=time.time())
    written = {f["file_path"] for f in lake.table(spec).inspect.data_files().to_pylist()} - before
    assert result.partitions_compacted >= 1 and written
    market.write(20, start_ns=now_h - hour // 2, step_ns=60_000_000_000)
    offload_table(store, lake, spec, chunk_rows=100_000, lookback_minutes=180)
    after = {f["file_path"] for f in lake.table(spec).inspect.data_files().to_pylist()}
    assert written <= after, "the offload rewrote files the compaction had written"
    assert archive_rows(lake, spec) == hot_rows(store, spec)


def test_reconcile_finds_nothing_after_offload_and_the_row_deleted_on_purpose(
    store: ClickHouseStore, lake: Lake
) -> None:
    Market(store).write(40, duplicates=2)
    offload_all(store, lake)
    for spec in TRADE_TABLES:
        checks = reconcile_table(store, lake, spec, retention_days=30)
        assert checks and all(c.ok for c in checks), (spec.name, checks)
    silver = lake.table(BY_NAME["silver_trades"])
    # The archive's checksums, computed by chDB from its files where it can read them (local
    # disk) and in Python otherwise, are the same numbers.
    days = [c.day for c in reconcile_table(store, lake, BY_NAME["silver_trades"], 30)]
    lo, hi = ((dt.date.fromisoformat(d) - dt.date(1970, 1, 1)).days for d in (days[0], days[-1]))
    by_python = reconcile._archive_checksums(silver, lo, hi)
    assert by_python and by_python == reconcile._archive_checksums(silver, lo, hi, store)
    victim = silver.scan().to_arrow().slice(3, 1).to_pylist()[0]
    silver.delete(EqualTo("ingest_seq", victim["ingest_seq"]))
    (check,) = reconcile_table(store, lake, BY_NAME["silver_trades"], retention_days=30)
    assert not check.ok and check.difference == -1 and check.hot_checksum != check.archive_checksum
    assert check.day == victim["ts_event"].date().isoformat()
    # A changed value (same row count) is caught by the checksum alone.
    spec = BY_NAME["bronze_trades_kraken"]
    assert all(c.ok for c in reconcile_table(store, lake, spec, retention_days=30))


def test_reconcile_candles_per_day_up_to_the_watermark(store: ClickHouseStore, lake: Lake) -> None:
    day, step = 86_400_000_000_000, 2 * 3_600_000_000_000
    # A trade every 2 h from midnight three days before the last one, the last at least 2 h ago:
    # its 1h window has closed, even when the suite runs just after midnight.
    last = (time.time_ns() - step) // step * step
    start = (last // day - 3) * day
    market = Market(store, start_ns=start)
    market.write((last - start) // step + 1, step_ns=step)
    offload_all(store, lake)
    checks = reconcile_table(store, lake, BY_NAME["ohlcv_1h"], retention_days=None)
    assert [c.ok for c in checks] == [
        True
    ] * 4  # three whole days, and the last day up to the watermark
    assert checks[-1].day == time.strftime("%Y-%m-%d", time.gmtime(last // 10**9))
    doomed = lake.table(BY_NAME["ohlcv_1h"])
    doomed.delete(
        EqualTo(
            "window_start", doomed.scan().to_arrow().column("window_start")[0].as_py().isoformat()
        )
    )
    assert (
        next(
            c.difference
            for c in reconcile_table(store, lake, BY_NAME["ohlcv_1h"], retention_days=None)
        )
        < 0
    )


def test_watermark_walks_back_past_snapshots_without_one(
    store: ClickHouseStore, lake: Lake
) -> None:
    Market(store).write(10)
    offload_all(store, lake)
    table = lake.table(BY_NAME["bronze_trades_kraken"])
    mark = watermark(table)
    empty = pa.Table.from_pylist([], schema=table.schema().as_arrow())
    table.append(empty)  # a snapshot some other tool made, with no K2 property
    assert watermark(lake.table(BY_NAME["bronze_trades_kraken"])) == mark


def test_several_writers_each_keep_their_own_watermark(store: ClickHouseStore, lake: Lake) -> None:
    """Two writers on one store (two `k2 ingest` processes), one whose clock runs an hour ahead:
    its rows, numbered higher, are archived first; the other's come later numbered below
    everything archived. One watermark for the table would skip them; one per writer does not."""
    ahead = Market(store)
    ahead.writer = StoreWriter(store, WriterSettings(), time.time_ns() // 1000 + 3600 * 10**6)
    ahead.next_id = dict.fromkeys(ahead.next_id, 500_000)
    ahead.write(50)
    offload_all(store, lake)
    behind = Market(store)
    behind.write(40)
    silver = lake.table(BY_NAME["silver_trades"])
    ((lowest,),) = store.rows(
        "SELECT max(ingest_seq) FROM k2.silver_trades WHERE writer = {w:String}",
        {"w": behind.writer.writer_id},
    )
    assert lowest < (watermark(silver) or 0)  # below the newest sequence already archived
    rows = offload_all(store, lake, chunk_rows=70)  # several chunks, each writer's rows cut alike
    assert rows["silver_trades"] == 160 and rows["bronze_trades_binance"] == 80
    assert_archive_equals_hot(store, lake)
    silver = lake.table(BY_NAME["silver_trades"])
    assert set(marks.read(silver, WRITER_MARKS, WATERMARK)) == {
        ahead.writer.writer_id,
        behind.writer.writer_id,
    }
    for spec in TRADE_TABLES:
        checks = reconcile_table(store, lake, spec, retention_days=30)
        assert checks and all(c.ok for c in checks), (spec.name, checks)
    again = offload_all(store, lake)
    assert all(again[t.name] == 0 for t in TRADE_TABLES)


def test_an_archive_from_before_the_writer_marks_resumes_from_its_watermark(
    store: ClickHouseStore, lake: Lake
) -> None:
    """An archive whose snapshots carry only the single watermark (made before the marks per
    writer): it is the mark of the rows that have no writer, and nothing is archived twice."""
    Market(store).write(10)
    store.execute(
        "ALTER TABLE k2.silver_trades UPDATE writer = '' WHERE 1 SETTINGS mutations_sync = 2"
    )
    spec = BY_NAME["silver_trades"]
    old = lake.table(spec)
    ((top,),) = store.rows("SELECT max(ingest_seq) FROM k2.silver_trades")
    old.append(
        pa.Table.from_pylist([], schema=old.schema().as_arrow()),
        snapshot_properties={WATERMARK: str(top)},
    )
    assert marks.read(lake.table(spec), WRITER_MARKS, WATERMARK) == {"": int(top)}
    later = Market(store)
    later.next_id = dict.fromkeys(later.next_id, 9_000)
    later.write(5)
    result = offload_table(store, lake, spec, chunk_rows=1000, lookback_minutes=180)
    assert result.rows == 20  # the new writer's rows only: the old ones are below the watermark
    ((newest,),) = store.rows(
        "SELECT max(ingest_seq) FROM k2.silver_trades WHERE writer = {w:String}",
        {"w": later.writer.writer_id},
    )
    assert marks.read(lake.table(spec), WRITER_MARKS, WATERMARK) == {
        "": int(top),
        later.writer.writer_id: int(newest),
    }


def test_hot_retention_drops_only_days_the_archive_holds(
    store: ClickHouseStore, lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    """An archive down for longer than a (shortened) retention loses nothing: old days stay in hot
    until offloaded, then go; a late repair of an expired day comes back and goes the same way."""
    from k2.archive.retention import expire_hot
    from k2.settings import HotStoreSettings

    hot = HotStoreSettings(bronze_ttl_days=1, silver_ttl_days=2)
    day_ns = 86_400 * 10**9
    now_hour = time.time_ns() // 3_600_000_000_000 * 3_600_000_000_000
    market = Market(store)
    market.writer = StoreWriter(store, WriterSettings(), 0, retention_days=1)
    caplog.set_level("WARNING", logger="k2")
    market.write(10, start_ns=now_hour - 5 * day_ns)  # a REST repair after a 5-day outage
    market.write(10, start_ns=now_hour - 3 * 3_600_000_000_000)
    assert market.writer.stats.old_rows == 40
    assert "40 trades arrived older than the hot store's retention (1 days" in caplog.text
    trade_tables = [t for t in TABLES if t.retention_days(hot) is not None]
    written = {t.name: hot_rows(store, t) for t in trade_tables}
    time.sleep(3)  # under a TTL, chDB would have deleted the old rows by now
    assert {t.name: hot_rows(store, t) for t in trade_tables} == written

    # The archive has not taken anything yet (it was down): every old day stays.
    results = {r.table: r for r in expire_hot(store, lake, hot)}
    assert not any(r.dropped for r in results.values())
    assert results["silver_trades"].kept and sum(results["silver_trades"].kept.values()) == 40
    assert "the archive lacks 40 of its 40 rows" in caplog.text

    offload_all(store, lake)  # the archive is back
    results = {r.table: r for r in expire_hot(store, lake, hot)}
    assert results["silver_trades"].rows_dropped == 40 and not results["silver_trades"].kept
    for spec in trade_tables:
        assert archive_rows(lake, spec) == written[spec.name], spec.name  # every row, once
        kept = hot_rows(store, spec)
        assert kept and all(r in written[spec.name] for r in kept)
        assert len(kept) == len(written[spec.name]) - results[spec.name].rows_dropped
    assert len(hot_rows(store, BY_NAME["silver_trades"])) == 40  # the recent ones

    market.write(1, start_ns=now_hour - 5 * day_ns + 60 * 10**9)  # late, into an expired day
    assert not any(r.dropped for r in expire_hot(store, lake, hot))  # not archived yet: kept
    offload_all(store, lake)
    assert (
        sum(r.rows_dropped for r in expire_hot(store, lake, hot) if r.table == "silver_trades") == 4
    )
    assert len(archive_rows(lake, BY_NAME["silver_trades"])) == 84


def test_candle_spans_join_into_as_few_commits_as_their_bound_allows() -> None:
    """Scattered windows a backfill touched go out in one commit while they fit the bound; spans
    longer than it are cut; nothing outside the spans' hull is rewritten."""
    scattered = [(t, t + 60) for t in range(0, 7200, 120)]  # every other 1m window for 2 h
    assert offload._ranges(scattered, 10_000) == [(0, 7140)]
    assert offload._ranges(scattered, 3600) == [(0, 3540), (3600, 7140)]
    assert offload._ranges([(0, 60), (100_000, 100_060)], 3600) == [(0, 60), (100_000, 100_060)]
    assert offload._ranges([(0, 9000)], 3600) == [(0, 3600), (3600, 7200), (7200, 9000)]
