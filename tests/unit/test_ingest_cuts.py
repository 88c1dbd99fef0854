"""When `k2 ingest` cuts a partition's batch: an interval after its first message was produced,
not after it was read (bus/consumer.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from k2.bus.consumer import POLL_S, IngestMember, _Pending
from k2.settings import BusSettings, WriterSettings

INTERVAL_S = 0.1


class Message:
    def __init__(self, kind: int, at_ms: int) -> None:
        self._stamp = (kind, at_ms)

    def timestamp(self) -> tuple[int, int]:
        return self._stamp


@pytest.fixture
def member() -> IngestMember:
    bus = BusSettings.model_validate({"bootstrap_servers": "127.0.0.1:9"})  # never connected
    writer = WriterSettings(batch_interval_ms=int(INTERVAL_S * 1000))
    store: Any = None
    return IngestMember(bus, writer, store, store, "test")


def waited(member: IngestMember, message: Message) -> float:
    """How long the message counts as having waited already, in seconds."""
    now = time.monotonic()
    return now - member._waiting_since(message)


def test_a_message_waits_from_when_it_was_produced(member: IngestMember) -> None:
    assert waited(member, Message(1, int(time.time() * 1000) - 40)) == pytest.approx(0.04, abs=0.02)


def test_an_old_message_or_a_slow_producer_clock_counts_one_interval_at_most(
    member: IngestMember,
) -> None:
    assert waited(member, Message(1, int(time.time() * 1000) - 10_000)) == pytest.approx(
        INTERVAL_S, abs=0.01
    )


def test_a_producer_clock_ahead_or_no_timestamp_counts_from_now(member: IngestMember) -> None:
    assert waited(member, Message(1, int(time.time() * 1000) + 10_000)) == pytest.approx(
        0, abs=0.01
    )
    assert waited(member, Message(0, -1)) == pytest.approx(0, abs=0.01)


def test_the_wait_for_messages_ends_when_the_first_batch_is_due(member: IngestMember) -> None:
    assert member._poll_s() == POLL_S  # nothing pending
    member._pending[("t", 0)] = _Pending(0, started=time.monotonic() - INTERVAL_S + 0.02)
    assert member._poll_s() == pytest.approx(0.02, abs=0.01)
    member._pending[("t", 1)] = _Pending(5, started=time.monotonic() - 5)  # overdue
    assert member._poll_s() == pytest.approx(0.001, abs=0.001)


def test_a_replayed_cut_is_not_waited_for_by_time(member: IngestMember) -> None:
    member._pending[("t", 0)] = _Pending(0, started=time.monotonic() - 5)
    member._forced[("t", 0)] = 10  # it ends at offset 10, however long that takes
    assert member._poll_s() == POLL_S
