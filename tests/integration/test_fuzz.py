"""Fuzzing through to a real store: 100,000 mutated frames per venue go through the adapter and
the writer into chDB (k2.simulator.fuzz). Nothing crashes or stalls, and every frame is either
stored exactly (its trades, value for value) or a reject with a reason. bench/fuzz.py runs more."""

from __future__ import annotations

import pytest

from k2.hotstore.clickhouse import ClickHouseStore
from k2.simulator.fuzz import SYMBOLS, fuzz
from tests.conftest import SAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FRAMES_PER_VENUE = 100_000


@pytest.mark.parametrize("venue", list(SYMBOLS))
def test_mutated_frames_are_stored_exactly_or_rejected_never_a_crash_or_a_stall(
    store: ClickHouseStore, venue: str
) -> None:
    # Mutated times reach back to 2010: bronze and silver keep them (no TTL; expiry waits for the
    # archive), so storage alone is what is checked.
    result = fuzz(store, venue, FRAMES_PER_VENUE, seed=len(venue), samples=SAMPLES)
    print(result.line())
    assert not result.crashes, (
        f"{len(result.crashes)} frames crashed the adapter, e.g. {result.crashes[:3]}"
    )
    assert not result.problems, result.problems
    assert result.with_trades > 10_000 and result.rejected > 10_000, result.line()
    if venue != "binance":  # messages of several trades: one bad trade does not cost the others
        assert result.partly_rejected > 100, result.line()
