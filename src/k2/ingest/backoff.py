"""Exponential backoff with jitter, capped, reset after a healthy period."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from k2.settings import IngestSettings


class Backoff:
    """Delays for successive reconnect attempts: initial * multiplier**n, capped, with jitter."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        multiplier: float = 2.0,
        jitter: float = 0.3,
        reset_after: float = 60.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial, self.maximum, self.multiplier = initial, maximum, multiplier
        self.jitter, self.reset_after = jitter, reset_after
        self.attempts = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._healthy_since: float | None = None

    @classmethod
    def from_settings(cls, s: IngestSettings, rng: random.Random | None = None) -> Backoff:
        return cls(
            s.backoff_initial_s,
            s.backoff_max_s,
            s.backoff_multiplier,
            s.backoff_jitter,
            s.backoff_reset_after_s,
            rng,
        )

    def next_delay(self) -> float:
        """Return the delay before the next attempt and count the attempt."""
        if (
            self._healthy_since is not None
            and self._clock() - self._healthy_since >= self.reset_after
        ):
            self.attempts = 0
        self._healthy_since = None
        base = min(self.maximum, self.initial * self.multiplier**self.attempts)
        self.attempts += 1
        # Full delay minus up to `jitter` of it, so many clients never retry in lockstep.
        return base * (1.0 - self.jitter * self._rng.random())

    def connected(self) -> None:
        """Note that a connection is up; if it stays healthy `reset_after` s, attempts reset."""
        self._healthy_since = self._clock()
