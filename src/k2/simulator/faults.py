"""The simulator's scripted faults: which are on, how often, and until when."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from k2.errors import ConfigError

FAULTS = {
    "disconnect": (
        "close every connection every N seconds (clean close and abrupt drop, alternating)"
    ),
    "gaps": "drop trades from the live stream (REST still serves them)",
    "duplicates": "send trades twice",
    "reorder": "deliver trades after later ones",
    "malformed": "inject malformed frames and malformed trades",
    "poison": (
        "change one field of a trade on the stream to a value no store can hold "
        "(REST keeps the true one)"
    ),
    "ratelimit": "answer REST with 429/Retry-After (Kraken: EAPI:Rate limit exceeded)",
    "shutdown": "Binance serverShutdown notices, then close",
    "rotation": "cut connections at a compressed '24-hour' age",
    "stall": "go silent without closing (heartbeat venues), then drop",
}


def parse_faults(spec: str) -> frozenset[str]:
    """Parse `none`, `all` or a comma-separated list of fault names."""
    spec = spec.strip().lower()
    if spec in ("", "none"):
        return frozenset()
    if spec == "all":
        return frozenset(FAULTS)
    names = frozenset(n.strip() for n in spec.split(",") if n.strip())
    unknown = sorted(names - set(FAULTS))
    if unknown:
        raise ConfigError(
            f"unknown fault {unknown[0]!r}; choose from: none, all, {', '.join(FAULTS)}"
        )
    return names


@dataclass
class Faults:
    seed: int = 1
    enabled: frozenset[str] = frozenset()
    disconnect_every_s: float = 20.0
    connection_max_age_s: float = 30.0
    ping_interval_s: float = 5.0
    stall_s: float = 15.0
    drop_p: float = 0.01
    duplicate_p: float = 0.01
    delay_p: float = 0.01
    garbage_p: float = 0.005
    poison_p: float = 0.01
    active_until: float | None = None  # monotonic deadline after which the market runs clean
    started: float = field(default_factory=time.monotonic)

    def active(self) -> bool:
        return bool(self.enabled) and (
            self.active_until is None or time.monotonic() < self.active_until
        )

    def on(self, name: str) -> bool:
        """Return whether fault `name` is enabled (regardless of the active window)."""
        assert name in FAULTS, name
        return name in self.enabled
