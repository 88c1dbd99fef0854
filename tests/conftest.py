"""Shared fixtures: the documented venue samples, one file per message variant."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# lake_target, lake, store, s3_endpoint: the archive fixtures; broker: the bus tests' Kafka broker;
# prefect_server: a real `prefect server start` on PostgreSQL
pytest_plugins = ["tests.archive_support", "tests.bus_support", "tests.prefect_support"]

SAMPLES = Path(__file__).parent / "fixtures" / "exchange-samples"
_PREFECT_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """One Prefect home for the whole run, set before anything imports Prefect.

    K2 keeps Prefect's state in each data directory (`k2.cli.common.prefect_env`, tested on its
    own). Every test makes a new data directory, and a new home costs Prefect's temporary API
    server its ~100 database migrations (20-30 s here) on the first flow; a shared one pays once.
    """
    global _PREFECT_HOME  # noqa: PLW0603 - shared by the configure and unconfigure hooks
    if "PREFECT_HOME" not in os.environ:
        _PREFECT_HOME = Path(tempfile.mkdtemp(prefix="k2-test-prefect-"))
        os.environ["PREFECT_HOME"] = str(_PREFECT_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PREFECT_HOME is not None:
        shutil.rmtree(_PREFECT_HOME, ignore_errors=True)


def sample_bytes(name: str) -> bytes:
    """Return a sample message compacted to one line, as it would arrive on the wire."""
    return json.dumps(json.loads((SAMPLES / name).read_text()), separators=(",", ":")).encode()


def sample_raw(name: str) -> bytes:
    """Return a sample file exactly as stored (pretty-printed)."""
    return (SAMPLES / name).read_bytes()


@pytest.fixture
def samples() -> Path:
    return SAMPLES
