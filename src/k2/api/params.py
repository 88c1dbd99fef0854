"""What the API's routes share: the common filters (venue, symbol, from, to), checked like the
CLI's, and their query parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Query

from k2.instruments import resolve_filters
from k2.timeutil import user_time

if TYPE_CHECKING:
    from k2.api.context import Context

FROM = Query(None, alias="from", description="RFC 3339, a date, or a duration ago (15m, 2h, 1d).")
TO = Query(None, alias="to", description="Up to (not including) this time; same forms as from.")


def checked_filters(
    ctx: Context, venue: str | None, symbol: str | None, start: str | None, end: str | None
) -> tuple[str | None, str | None, int | None, int | None]:
    """Venue and symbol known to `ctx`'s instruments (resolved to their spelling), and the times
    as nanoseconds; InputError (a 400) says what is wrong."""
    venue, symbol = resolve_filters(ctx.instruments, venue, symbol)
    start_ns = None if start is None else user_time(start, "from")
    end_ns = None if end is None else user_time(end, "to")
    return venue, symbol, start_ns, end_ns
