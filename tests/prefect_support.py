"""A real Prefect server for the flow tests: `prefect server start` in its own process on
loopback, its database on the machine's PostgreSQL (which has the pg_trgm extension Prefect
needs), as the cluster shape runs it. One per test session: it is ready in about 5 s."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.archive_support import postgres_available
from tests.bus_support import free_port


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL (`.../api`) of a Prefect server running for the whole session."""
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg2

    name = f"k2_test_prefect_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = os.environ | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # a run that waits for its deployment's one slot asks again after 2 s, not 30
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
    }
    env.pop("PREFECT_API_URL", None)
    log_path = Path(home) / "server.log"
    log = log_path.open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"prefect server start exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prefect server not ready in 120 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


# -- the server's REST API, as a user's script would drive it ------------------------------------
def deployments(api: str) -> dict[str, dict[str, Any]]:
    """Every deployment on the server, by its name."""
    found = httpx.post(f"{api}/deployments/filter", json={}, timeout=30)
    found.raise_for_status()
    return {d["name"]: d for d in found.json()}


def clear_deployments(api: str) -> None:
    for d in deployments(api).values():
        httpx.delete(f"{api}/deployments/{d['id']}", timeout=30).raise_for_status()


def run_deployment(api: str, deployment_id: str) -> str:
    """Ask for a run of a deployment now; return the flow run's id."""
    made = httpx.post(f"{api}/deployments/{deployment_id}/create_flow_run", json={}, timeout=30)
    made.raise_for_status()
    return str(made.json()["id"])


FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def wait_for_runs(api: str, run_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    """Wait until every run is in a final state; return the runs as the server reports them."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [httpx.get(f"{api}/flow_runs/{i}", timeout=30).json() for i in run_ids]
        if all((r.get("state") or {}).get("type") in FINAL for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(f"flow runs not finished in {timeout:.0f} s: {runs}")
        time.sleep(0.5)
