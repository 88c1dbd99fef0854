"""What the API is served from: the running process (`k2 up`, or `k2 api`), as the routes see it."""

from __future__ import annotations

from typing import Protocol

from k2.hotstore.store import HotStore
from k2.instruments import Instruments
from k2.observe.health import HealthInputs
from k2.observe.metrics import Source
from k2.query.tiers import Archive


class Context(Source, Protocol):
    """What the API needs from the running process: what the metrics collector reads, and the
    store (None until it is open), the instruments and the health inputs."""

    store: HotStore | None
    instruments: Instruments

    @property
    def lake(self) -> Archive | None:
        """The archive (None until it is open), for reads of what hot no longer holds."""

    def health_inputs(self) -> HealthInputs: ...
