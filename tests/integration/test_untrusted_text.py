"""Text from venues and stores reaches the terminal as text: Rich never reads it as markup."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest

from k2.hotstore import migrate
from k2.hotstore.clickhouse import ClickHouseStore
from k2.hotstore.rows import reject_rows
from k2.records import Reject
from k2.settings import HotStoreSettings
from tests.integration.test_cli_ingest import k2

pytestmark = pytest.mark.integration
MARKUP = "price [/] was [bold]bad[/bold] [word]"


def test_markup_in_a_reject_and_a_health_detail_is_printed_as_it_is(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = ClickHouseStore.at(data / "hot")
    try:
        migrate.apply(store, HotStoreSettings())
        store.insert_arrow(
            "k2.rejects",
            reject_rows([Reject("binance", MARKUP, b'{"p":"[/]"}', time.time_ns(), "binance-1")]),
        )
        now = int(time.time() * 1000)
        store.insert_arrow(
            "k2.ops_flow_runs",
            pa.table(
                {
                    "flow": ["offload"],
                    "table_name": ["silver_trades"],
                    "started_at": pa.array([now], pa.timestamp("ms", "UTC")),
                    "finished_at": pa.array([now], pa.timestamp("ms", "UTC")),
                    "status": ["failed"],
                    "rows": pa.array([0], pa.uint64()),
                    "watermark": pa.array([0], pa.int64()),
                    "newest_event": pa.array([0], pa.timestamp("ns", "UTC")),
                    "detail": [MARKUP],
                }
            ),
        )
    finally:
        store.close()
    out = k2("rejects", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert "[/]" in text and "[bold]bad[/bold]" in text and "[word]" in text
    health = k2("health", "--data-dir", str(data))
    assert health.returncode == 2, health.stderr.decode()  # k2 up is not running: FAIL
    assert f"1 failed runs in a row: {MARKUP}" in health.stdout.decode()
