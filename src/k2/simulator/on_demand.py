"""Faults a harness starts on demand, on a venue's port: `GET /_sim/fault?name=<name>&seconds=<s>`
(bench/faults.py measures what each one does). The venue server applies them (server.py)."""

from __future__ import annotations

CONTROL_PATH = "/_sim/fault"
MAX_SECONDS = 3600.0
ON_DEMAND = {
    "outage": "drop every connection at once (no close frame) and refuse new ones for the time",
    "silent": "send nothing on the open connections for the time (heartbeats neither), then drop",
    "ratelimit": "answer every REST request with the venue's rate-limit reply for the time",
}
USAGE = f"name: one of {', '.join(ON_DEMAND)}; seconds: 0 to {MAX_SECONDS:g}\n"


def parse_request(query: dict[str, str]) -> tuple[str, float] | None:
    """The fault asked for and its length in seconds; None if the request is not one."""
    name = query.get("name", "")
    try:
        seconds = float(query.get("seconds", "0"))
    except ValueError:
        return None
    if name not in ON_DEMAND or not 0 <= seconds <= MAX_SECONDS:
        return None
    return name, seconds
