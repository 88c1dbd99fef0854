import random

from k2.ingest.backoff import Backoff


def test_exponential_capped_with_jitter() -> None:
    b = Backoff(1.0, 8.0, 2.0, jitter=0.25, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    bases = [1, 2, 4, 8, 8, 8]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.75 <= d <= base


def test_jitter_spreads_clients() -> None:
    a = Backoff(1.0, 8.0, jitter=0.5, rng=random.Random(1))
    b = Backoff(1.0, 8.0, jitter=0.5, rng=random.Random(2))
    assert [a.next_delay() for _ in range(3)] != [b.next_delay() for _ in range(3)]


def test_resets_only_after_a_healthy_period() -> None:
    now = [0.0]
    b = Backoff(1.0, 30.0, jitter=0.0, reset_after=60.0, clock=lambda: now[0])
    assert [b.next_delay() for _ in range(3)] == [1, 2, 4]
    b.connected()
    now[0] += 10  # a connection that died after 10 s is not healthy
    assert b.next_delay() == 8
    b.connected()
    now[0] += 61
    assert b.next_delay() == 1
