"""Progress of the archive flows, table by table: the listener hook, the API's NDJSON stream, and
what `k2 offload`, `k2 maintain` and `k2 reconcile` print (in process and through the API)."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from k2.api.app import create_app
from k2.archive.offload import OffloadResult
from k2.archive.tables import BY_NAME, TABLES
from k2.cli import app as k2_app
from k2.cli import archive as archive_cli
from k2.cli import remote as remote_cli
from k2.errors import ArchiveError
from k2.flows import FLOWS, offload
from k2.flows.progress import TableEvent, listening
from k2.flows.runtime import ArchiveRuntime
from k2.hotstore import migrate, recovery
from k2.hotstore.clickhouse import ClickHouseStore
from k2.settings import HotStoreSettings, load_settings
from k2.timeutil import rfc3339_to_ns
from tests.archive_support import Market
from tests.integration import test_flows
from tests.integration.test_up import K2, env_without_k2

pytestmark = pytest.mark.integration
NAMES = [t.name for t in TABLES]
NDJSON = {"Accept": "application/x-ndjson"}
harness, runtime = (
    test_flows.harness,
    test_flows.runtime,
)  # its fixtures: the session's Prefect server
RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z"


def pairs(events: list[TableEvent]) -> list[tuple[str, str, int, int]]:
    return [(e.table, e.state, e.index, e.total) for e in events]


def expected_pairs(names: list[str]) -> list[tuple[str, str, int, int]]:
    return [(n, s, i, len(names)) for i, n in enumerate(names, 1) for s in ("started", "done")]


def fail_table(monkeypatch: pytest.MonkeyPatch, table: str) -> None:
    """Make every offload of `table` fail (for good: not retried)."""
    real = offload.offload_table

    def failing(store: Any, lake: Any, spec: Any, **kw: Any) -> Any:
        if spec.name == table:
            raise ArchiveError("schema does not match")
        return real(store, lake, spec, **kw)

    monkeypatch.setattr(offload, "offload_table", failing)


def hold_table(monkeypatch: pytest.MonkeyPatch, table: str, gate: threading.Event) -> list[bool]:
    """Make the offload of `table` wait for `gate` first; return whether it was opened in time."""
    real, opened = offload.offload_table, []

    def waiting(store: Any, lake: Any, spec: Any, **kw: Any) -> Any:
        if spec.name == table:
            opened.append(gate.wait(30))
        return real(store, lake, spec, **kw)

    monkeypatch.setattr(offload, "offload_table", waiting)
    return opened


# -- the hook ----------------------------------------------------------------------------------


def test_a_listener_hears_each_table_start_and_end_with_its_result(runtime: ArchiveRuntime) -> None:
    Market(runtime.store).write(5)
    events: list[TableEvent] = []
    result = FLOWS["offload"](None, on_table=events.append)
    assert pairs(events) == expected_pairs(NAMES)
    done = {e.table: e for e in events if e.state == "done"}
    assert {n: e.result for n, e in done.items()} == result
    assert done["silver_trades"].result["rows"] == 20  # type: ignore[index]
    assert all(e.flow == "offload" and e.seconds > 0 and e.error is None for e in done.values())


def test_a_failed_table_is_reported_and_the_rest_still_run(
    runtime: ArchiveRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    Market(runtime.store).write(5)
    fail_table(monkeypatch, "ohlcv_1h")
    events: list[TableEvent] = []
    with pytest.raises(ArchiveError, match="offload failed for ohlcv_1h"):
        FLOWS["offload"](["ohlcv_1h", "ohlcv_1d"], on_table=events.append)
    assert [(e.table, e.state) for e in events] == [
        ("ohlcv_1h", "started"),
        ("ohlcv_1h", "failed"),
        ("ohlcv_1d", "started"),
        ("ohlcv_1d", "done"),
    ]
    assert "schema does not match" in (events[1].error or "") and events[1].result is None


def test_a_listener_that_raises_does_not_break_the_flow(
    runtime: ArchiveRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    Market(runtime.store).write(5)
    FLOWS["offload"](["silver_trades", "ohlcv_1m"])

    def broken(event: TableEvent) -> None:
        raise RuntimeError(f"listener bug at {event.table} {event.state}")

    with caplog.at_level(logging.WARNING, logger="k2.flows.progress"):
        report = FLOWS["reconcile"](["silver_trades", "ohlcv_1m"], on_table=broken)
    assert set(report) == {"silver_trades", "ohlcv_1m"} and report["silver_trades"]["days"] >= 1
    assert set(runtime.status.reconcile) == {"silver_trades", "ohlcv_1m"}  # recorded as usual
    failures = [r for r in caplog.records if "progress listener failed" in r.getMessage()]
    assert len(failures) == 4 and "listener bug at ohlcv_1m done" in str(failures[-1].exc_info[1])  # type: ignore[index]


def test_each_run_tells_only_its_own_listener(runtime: ArchiveRuntime) -> None:
    Market(runtime.store).write(5)
    FLOWS["offload"](["silver_trades", "ohlcv_1m"])
    heard: dict[str, list[TableEvent]] = {"maintenance": [], "reconcile": [], "outer": []}
    tables = {"maintenance": "ohlcv_1m", "reconcile": "silver_trades"}
    threads = [
        threading.Thread(target=FLOWS[f], args=([t],), kwargs={"on_table": heard[f].append})
        for f, t in tables.items()
    ]
    with listening(heard["outer"].append):  # this thread's listener: the threads do not inherit it
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    for flow, table in tables.items():
        assert [(e.flow, e.table, e.state) for e in heard[flow]] == [
            (flow, table, "started"),
            (flow, table, "done"),
        ]
    assert heard["outer"] == []


# -- the API -------------------------------------------------------------------------------------


@pytest.fixture
def api(runtime: ArchiveRuntime, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path, metrics={"enabled": False})
    ctx = SimpleNamespace(store=runtime.store, settings=settings, instruments=None, metrics=None)
    with TestClient(create_app(ctx), base_url="http://127.0.0.1") as client:  # type: ignore[arg-type]
        yield client


def lines(resp: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in resp.iter_lines() if line]


def test_api_streams_each_table_as_it_happens_then_the_result(
    api: TestClient, runtime: ArchiveRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    Market(runtime.store).write(5)
    gate = threading.Event()
    opened = hold_table(monkeypatch, "ohlcv_1m", gate)  # until the client has read silver's line
    tables = ["silver_trades", "ohlcv_1m"]
    got: list[dict[str, Any]] = []
    with api.stream("POST", "/api/flows/offload", json={"tables": tables}, headers=NDJSON) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        for line in resp.iter_lines():
            got.append(json.loads(line))
            if got[-1].get("state") == "done" and got[-1]["table"] == "silver_trades":
                gate.set()
    assert opened == [True]  # silver's line came while the flow was still running: streamed
    assert [(e["event"], e.get("table"), e.get("state")) for e in got] == [
        ("table", "silver_trades", "started"),
        ("table", "silver_trades", "done"),
        ("table", "ohlcv_1m", "started"),
        ("table", "ohlcv_1m", "done"),
        ("result", None, None),
    ]
    result = got[-1]["result"]
    assert set(result) == set(tables) and result["silver_trades"]["rows"] == 20
    assert got[1]["result"] == result["silver_trades"] and got[1]["index"] == 1
    assert got[3]["total"] == 2 and got[3]["seconds"] > 0


def test_api_without_ndjson_answers_json_as_before(
    api: TestClient, runtime: ArchiveRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    Market(runtime.store).write(5)
    resp = api.post(
        "/api/flows/offload", json={"tables": ["silver_trades", "bronze_trades_kraken"]}
    )
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert list(body) == ["silver_trades", "bronze_trades_kraken"]
    assert set(body["silver_trades"]) == set(asdict(OffloadResult("x")))
    assert body["silver_trades"]["rows"] == 20 and body["bronze_trades_kraken"]["rows"] == 5
    fail_table(monkeypatch, "ohlcv_1h")
    failed = api.post("/api/flows/offload", json={"tables": ["ohlcv_1h"]})
    assert failed.status_code == 500 and "offload failed for ohlcv_1h" in failed.json()["detail"]
    with api.stream(
        "POST", "/api/flows/offload", json={"tables": ["ohlcv_1h"]}, headers=NDJSON
    ) as r:
        events = lines(r)
    assert [e.get("state") for e in events[:2]] == ["started", "failed"]
    assert events[-1]["event"] == "error" and events[-1]["status"] == 500
    assert "offload failed for ohlcv_1h" in events[-1]["detail"]
    for headers in ({}, NDJSON):  # refused before anything runs, in both forms
        bad = api.post("/api/flows/offload", json={"tables": ["gold"]}, headers=headers)
        assert bad.status_code == 400 and "unknown archive table 'gold'" in bad.json()["detail"]
        assert api.post("/api/flows/nope", json={}, headers=headers).status_code == 404


# -- the commands --------------------------------------------------------------------------------


def k2(data_dir: Path, api_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A command as a user runs it, piped, at 80 columns, against Prefect's test server."""
    env = env_without_k2() | {"PREFECT_API_URL": api_url, "COLUMNS": "80"}
    return subprocess.run(
        [*K2, *args, "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=data_dir,
    )


def table_lines(out: str, flow: str) -> dict[str, str]:
    """The progress lines, by table."""
    found = {}
    for line in out.splitlines():
        if line.startswith(f"{flow}  "):
            found[line.split()[1]] = line
    return found


def summary(out: str, flow: str, tables: int = 10) -> tuple[str, list[str], list[str]]:
    """The summary after the "<flow>: N tables in S s" line: its title, header and rows."""
    done = re.search(rf"^{flow}: {tables} tables in [\d.]+ s$", out, re.MULTILINE)
    assert done, out
    title, *rest = [line for line in out[done.end() :].splitlines() if line.strip()]
    rule = next(i for i, line in enumerate(rest) if set(line) == {"─"})
    return title.strip(), rest[:rule], rest[rule + 1 :]


def assert_readable(out: str, flow: str, width: int = 80) -> tuple[list[str], list[str]]:
    """The summary: within `width`, nothing cut short, each table whole on its own row."""
    title, header, rows = summary(out, flow)
    assert "…" not in out and all(len(line) <= width for line in [*header, *rows]), out
    assert title == flow and [r.split()[0] for r in rows if not r.startswith(" ")] == NAMES, out
    return header, rows


class Offloaded(NamedTuple):
    data_dir: Path
    stdout: str
    started_ns: int  # just before `k2 offload` started
    finished_ns: int  # just after it finished


@pytest.fixture(scope="module")
def offloaded(harness: str, tmp_path_factory: pytest.TempPathFactory) -> Offloaded:
    """A stopped data directory with trades in it, offloaded once with `k2 offload`."""
    data = tmp_path_factory.mktemp("cli")
    store = ClickHouseStore.at(data / "hot")
    migrate.apply(store, HotStoreSettings())
    # Trades from 22:00 yesterday (UTC), so even the 1d window has closed whatever the time of day
    # (three hours before now left no closed 1d window after 03:00 UTC: no 1d line to check).
    day = 86_400 * 10**9
    Market(store, start_ns=time.time_ns() // day * day - 2 * 3_600 * 10**9).write(10)
    store.close()
    recovery.mark_clean(data / "hot")  # as `k2 up` leaves it when it stops
    started = time.time_ns()
    out = k2(data, harness, "offload")
    assert out.returncode == 0, out.stderr[-3000:]
    return Offloaded(data, out.stdout, started, time.time_ns())


def test_offload_prints_a_line_per_table_and_a_summary_that_fits_80_columns(
    offloaded: Offloaded,
) -> None:
    out = offloaded.stdout
    found = table_lines(out, "offload")
    assert list(found) == NAMES, out  # one line per table, in order, as each finished
    for name, count in {"silver_trades": 40, "bronze_trades_binance": 20}.items():
        assert re.search(rf"  {count} rows  1 commit  watermark {RFC3339}  [\d.]+ s$", found[name])
    assert re.search(rf"  [1-9][\d,]* rows  1 commit  watermark {RFC3339}  ", found["ohlcv_1m"])
    for name, line in found.items():
        mark = rfc3339_to_ns(re.findall(RFC3339, line)[0])
        if BY_NAME[name].is_candles:  # the end of the last closed window: since yesterday 22:00
            assert offloaded.started_ns - 2 * 86_400 * 10**9 <= mark <= offloaded.finished_ns, line
        else:  # the ingest sequence: when the trades were written, just before the offload
            assert offloaded.started_ns - 600 * 10**9 <= mark <= offloaded.started_ns, line
    header, rows = assert_readable(out, "offload")
    assert [h.split() for h in header] == [["table", "rows", "commits", "watermark"]]
    assert any(re.fullmatch(rf"silver_trades\s+40\s+1\s+{RFC3339}", r) for r in rows), rows


def test_maintain_prints_a_line_per_table(offloaded: Offloaded, harness: str) -> None:
    out = k2(offloaded.data_dir, harness, "maintain")
    assert out.returncode == 0, out.stderr[-3000:]
    found = table_lines(out.stdout, "maintenance")
    assert list(found) == NAMES, out.stdout
    what = (
        r"files \d+ -> \d+  \d+ partitions? compacted  \d+ snapshots? expired"
        r"  \d+ orphan files? removed"
    )
    assert all(re.search(rf"  {what}  [\d.]+ s$", line) for line in found.values()), out.stdout
    assert "  files 1 -> 1  " in found["silver_trades"]  # one offload: one file per day
    header, _ = assert_readable(out.stdout, "maintenance")
    assert header[-1].split()[:3] == ["table", "files", "compacted"]


def test_reconcile_prints_a_line_per_table_and_json_stays_pure(
    offloaded: Offloaded,
    harness: str,
) -> None:
    out = k2(offloaded.data_dir, harness, "reconcile")
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    found = table_lines(out.stdout, "reconcile")
    assert list(found) == NAMES, out.stdout
    per_table = r"  \d+ days? compared  no differences  [\d.]+ s$"
    assert all(re.search(per_table, line) for line in found.values()), out.stdout
    assert re.search(r"  [12] days? compared  ", found["silver_trades"]), out.stdout
    header, _ = assert_readable(out.stdout, "reconcile")
    assert header[-1].split() == ["table", "days", "differences"]
    quiet = k2(offloaded.data_dir, harness, "reconcile", "--json")
    assert quiet.returncode == 0 and set(json.loads(quiet.stdout)) == set(NAMES)  # nothing else


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_offload_through_k2_up_prints_the_streamed_tables(
    api: TestClient, runtime: ArchiveRuntime, monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    Market(runtime.store).write(5)
    monkeypatch.setattr(remote_cli, "running_api", lambda data_dir: "http://127.0.0.1")

    def reach(url: str, settings: Any, timeout: float | None = None) -> TestClient:
        return TestClient(api.app, base_url=url)

    monkeypatch.setattr(archive_cli, "client", reach)
    tty = "1" if terminal else None  # as on a terminal (CliRunner's stdout is not one)
    env = {"COLUMNS": "80", "TTY_COMPATIBLE": tty, "TTY_INTERACTIVE": tty, "TERM": "xterm"}
    out = CliRunner().invoke(k2_app, ["offload", "-t", "silver_trades", "-t", "ohlcv_1m"], env=env)
    assert out.exit_code == 0, out.output
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.stdout).replace("\r", "\n")  # as seen
    found = table_lines(text, "offload")
    assert list(found) == ["silver_trades", "ohlcv_1m"], text
    assert re.search(
        rf"^offload  silver_trades  20 rows  1 commit  watermark {RFC3339}  ", text, re.MULTILINE
    )
    assert re.search(r"^offload: 2 tables in [\d.]+ s$", text, re.MULTILINE)
    assert ("━" in out.stdout) is terminal  # the progress bar, on a terminal only
    assert ("0/2" in out.stdout and "2/2" in out.stdout) is terminal  # tables done of all
