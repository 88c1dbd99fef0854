"""The archive flows under Prefect, against a real `prefect server start`
(tests/prefect_support.py): in this process, as `k2 up` runs them, and as deployments."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from k2.archive.lake import Lake
from k2.archive.tables import TABLES
from k2.errors import ArchiveError, StoreError
from k2.flows import maintenance, offload, reconcile
from k2.flows.runtime import ArchiveRuntime, using
from k2.flows.schedule import Job, Schedule
from k2.hotstore.clickhouse import ClickHouseStore
from k2.settings import load_settings
from tests.archive_support import Market, archive_rows, hot_rows

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deploy" / "prefect" / "prefect.yaml"


@pytest.fixture(scope="module")
def harness(prefect_server: str) -> Iterator[str]:
    """Prefect's API for this module's flows: the session's server, for every thread (a thread
    started here does not see a settings context, only the process-wide one)."""
    from prefect.context import refresh_global_settings_context

    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = prefect_server
    refresh_global_settings_context()
    try:
        yield prefect_server
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before
        refresh_global_settings_context()


@pytest.fixture
def runtime(harness: str, store: ClickHouseStore, tmp_path: Path) -> Iterator[ArchiveRuntime]:
    settings = load_settings(data_dir=tmp_path, archive={"retries": 2, "retry_delay_s": 0})
    lake = Lake(settings.archive, tmp_path)
    with using(ArchiveRuntime(store, lake, settings)) as rt:
        yield rt
    lake.close()


def test_offload_flow_archives_every_table_and_records_it(runtime: ArchiveRuntime) -> None:
    Market(runtime.store).write(25)
    results = offload.offload_flow()
    assert set(results) == set(runtime.status.tables) and results["silver_trades"]["rows"] == 100
    for spec_name, status in runtime.status.tables.items():
        assert status.last_success > 0 and status.consecutive_failures == 0, spec_name
    from k2.archive.tables import BY_NAME

    assert archive_rows(runtime.lake, BY_NAME["silver_trades"]) == hot_rows(
        runtime.store, BY_NAME["silver_trades"]
    )
    rows = runtime.store.rows(
        "SELECT table_name, toString(status), rows FROM k2.ops_flow_runs WHERE flow = 'offload'"
    )
    assert len(rows) == 10 and {r[1] for r in rows} == {"ok"}
    assert runtime.status.cycles == 1 and runtime.status.cycle_seconds > 0


def test_a_second_run_skips_while_one_is_running(runtime: ArchiveRuntime) -> None:
    with runtime.guard("offload") as mine:
        assert mine
        assert offload.offload_flow() == {"skipped": True}
        results: dict[str, Any] = {}
        other = threading.Thread(target=lambda: results.update(r=offload.offload_flow()))
        other.start()
        other.join()
        assert results["r"] == {"skipped": True}
    assert runtime.status.skipped["offload"] == 2
    assert offload.offload_flow() != {"skipped": True}  # free again


def test_transient_errors_are_retried_permanent_ones_fail_the_flow_after_the_rest(
    runtime: ArchiveRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    Market(runtime.store).write(10)
    real = offload.offload_table
    calls: dict[str, int] = {}

    def flaky(store: Any, lake: Any, spec: Any, **kw: Any) -> Any:
        calls[spec.name] = calls.get(spec.name, 0) + 1
        if spec.name == "bronze_trades_kraken" and calls[spec.name] == 1:
            raise StoreError("the store was busy")  # transient: retried
        if spec.name == "ohlcv_1h":
            raise ArchiveError("schema does not match")  # permanent: not retried
        return real(store, lake, spec, **kw)

    monkeypatch.setattr(offload, "offload_table", flaky)
    with pytest.raises(ArchiveError, match="offload failed for ohlcv_1h"):
        offload.offload_flow()
    assert calls["bronze_trades_kraken"] == 2 and calls["ohlcv_1h"] == 1
    assert calls["ohlcv_1d"] == 1  # the tables after the failed one were still offloaded
    status = runtime.status.tables["ohlcv_1h"]
    assert status.consecutive_failures == 1 and "schema does not match" in status.last_error
    failed = runtime.store.rows("SELECT table_name FROM k2.ops_flow_runs WHERE status = 'failed'")
    assert failed == [("ohlcv_1h",)]


@pytest.mark.parametrize(
    ("flow", "work"),
    [
        ("offload", "offload_table"),
        ("maintenance", "maintain_table"),
        ("reconcile", "reconcile_table"),
    ],
)
def test_a_failing_table_does_not_stop_the_others_in_any_flow(
    runtime: ArchiveRuntime, monkeypatch: pytest.MonkeyPatch, flow: str, work: str
) -> None:
    Market(runtime.store).write(10)
    if flow != "offload":
        offload.offload_flow()  # something to maintain and to compare
    module = {"offload": offload, "maintenance": maintenance, "reconcile": reconcile}[flow]
    real = getattr(module, work)
    seen: list[str] = []

    def failing(*args: Any, **kw: Any) -> Any:
        spec = next(a for a in args if hasattr(a, "partition_by"))
        seen.append(spec.name)
        if spec.name == "bronze_trades_kraken":
            raise ArchiveError("this table is broken")  # permanent: not retried
        return real(*args, **kw)

    monkeypatch.setattr(module, work, failing)
    before = time.time()
    run = {
        "offload": offload.offload_flow,
        "maintenance": maintenance.maintenance_flow,
        "reconcile": reconcile.reconcile_flow,
    }[flow]
    with pytest.raises(ArchiveError, match=f"{flow} failed for bronze_trades_kraken"):
        run()
    names = [t.name for t in TABLES]
    assert seen == names  # every table was tried, in order, the ones after the failure too
    if flow == "maintenance":
        rows = runtime.store.rows(
            "SELECT table_name, toString(status), detail FROM k2.ops_maintenance_audit"
        )
        assert runtime.status.maintenance_at >= before and not runtime.status.maintenance_ok
    else:
        rows = runtime.store.rows(
            "SELECT table_name, toString(status), detail FROM k2.ops_flow_runs "
            f"WHERE flow = '{flow}' "
            f"AND started_at >= fromUnixTimestamp64Milli({int(before * 1000)})"
        )
    failed = [(t, d) for t, status, d in rows if status == "failed"]
    assert [t for t, _ in failed] == ["bronze_trades_kraken"]
    assert "this table is broken" in failed[0][1]
    assert sorted(t for t, status, _ in rows if status == "ok") == sorted(
        n for n in names if n != "bronze_trades_kraken"
    )
    if flow == "reconcile":
        assert runtime.status.reconcile_at >= before  # the run is recorded, failed table and all


def test_maintenance_and_reconcile_flows_audit_what_they_did(runtime: ArchiveRuntime) -> None:
    market = Market(runtime.store)
    for i in range(3):
        market.write(10, start_ns=market.start + i * 600_000_000_000)
        offload.offload_flow()
    done = maintenance.maintenance_flow(["silver_trades", "ohlcv_1m"])
    assert done["silver_trades"]["partitions_compacted"] >= 1
    audit = runtime.store.rows(
        "SELECT table_name, toString(status), files_before, files_after "
        "FROM k2.ops_maintenance_audit"
    )
    assert sorted(r[0] for r in audit) == ["ohlcv_1m", "silver_trades"] and all(
        r[1] == "ok" for r in audit
    )
    assert runtime.status.maintenance_ok and runtime.status.maintenance_at > 0
    report = reconcile.reconcile_flow()
    assert report["silver_trades"]["days"] >= 1 and all(
        not r["differences"] for r in report.values()
    )
    days = sum(r["days"] for r in report.values())
    assert runtime.store.rows("SELECT countIf(ok), count() FROM k2.ops_reconcile")[0] == (
        days,
        days,
    )


def test_scheduler_runs_jobs_on_time_and_skips_a_run_still_going() -> None:
    runs: list[str] = []

    class Every(Job):
        def next_after(self, moment: dt.datetime) -> dt.datetime:
            return moment + dt.timedelta(seconds=0.2)

    def slow() -> None:
        runs.append("slow")
        time.sleep(0.7)

    async def main() -> None:
        stop = asyncio.Event()
        schedule = Schedule(
            [Every("fast", "", lambda: runs.append("fast")), Every("slow", "", slow)]
        )
        task = asyncio.create_task(schedule.run(stop))
        await asyncio.sleep(1.1)
        stop.set()
        await task
        await asyncio.gather(*schedule.running())

    asyncio.run(main())
    assert runs.count("fast") >= 4
    assert 1 <= runs.count("slow") <= 2  # while it sleeps, its next times are skipped


def test_prefect_yaml_deploys_three_scheduled_deployments_to_a_process_pool(
    harness: str, tmp_path: Path
) -> None:
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    assert {d["name"] for d in spec["deployments"]} == {"offload", "maintenance", "reconcile"}
    env = os.environ | {"PREFECT_API_URL": harness}
    prefect = [sys.executable, "-m", "prefect"]
    made = subprocess.run(
        [*prefect, "work-pool", "create", "k2-process", "--type", "process"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    out = subprocess.run(
        [*prefect, "--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_YAML)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]

    async def deployments() -> list[Any]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return await client.read_deployments()

    found = {d.name: d for d in asyncio.run(deployments())}
    assert set(found) >= {"offload", "maintenance", "reconcile"}
    crons = {
        n: found[n].schedules[0].schedule.cron for n in ("offload", "maintenance", "reconcile")
    }
    assert crons == {
        "offload": "*/15 * * * *",
        "maintenance": "0 2 * * *",
        "reconcile": "30 2 * * *",
    }
    for name in ("offload", "maintenance", "reconcile"):
        d = found[name]
        assert d.work_pool_name == "k2-process" and d.entrypoint == f"k2.flows.deployed:{name}"
        assert d.global_concurrency_limit is not None and d.global_concurrency_limit.limit == 1
        assert str(d.concurrency_options.collision_strategy).endswith("ENQUEUE")


# `k2 flows serve` itself (deployments, one run at a time, the --config file handed to each run):
# tests/integration/test_both_shapes.py, where it archives the cluster shape's store.
