"""Shared fixtures: the documented venue samples, one file per message variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["tests.archive_support"]  # catalog_uri, lake, store: the archive fixtures

SAMPLES = Path(__file__).parent / "fixtures" / "exchange-samples"


def sample_bytes(name: str) -> bytes:
    """Return a sample message compacted to one line, as it would arrive on the wire."""
    return json.dumps(json.loads((SAMPLES / name).read_text()), separators=(",", ":")).encode()


def sample_raw(name: str) -> bytes:
    """Return a sample file exactly as stored (pretty-printed)."""
    return (SAMPLES / name).read_bytes()


@pytest.fixture
def samples() -> Path:
    return SAMPLES
