"""Where feeds deliver what they receive: the hot-store writer, or a recorder for `k2 watch`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from k2.records import Gap, Reject, Source, Trade


class Sink(Protocol):
    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str, source: Source
    ) -> None:
        """Take trades as received (all, for bronze) and the new ones among them (for silver),
        all from one connection (`conn_id`) and one `source`.

        `accepted` holds the very objects of `received` that are new (identity, not equality).

        May wait: that is how a slow store applies backpressure to the feeds. Take the trades
        before the first await: the feed may be cancelled while this waits (a stop, a rotation,
        a watchdog trip), and by then its cursors already count these trades as delivered.
        """

    async def gap(self, gap: Gap) -> None:
        """Record a gap (again, with its outcome, once it is resolved)."""

    async def reject(self, reject: Reject) -> None:
        """Quarantine a message that failed validation."""
