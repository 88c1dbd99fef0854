"""Opaque page cursors for /api/v1/trades: where the next page (further back in time) starts,
with the filters of the first page, so paging stays on one query while trades keep arriving."""

from __future__ import annotations

import base64
import binascii
import json

from k2.errors import InputError
from k2.query.tiers import Filter, TradeKey


def encode(f: Filter, before: TradeKey) -> str:
    """The cursor of the page of `f`'s trades ordered before `before`."""
    body = [f.venue, f.symbol, f.start_ns, f.end_ns, list(before)]
    text = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode(cursor: str) -> tuple[Filter, TradeKey]:
    """The filters and the position a cursor names; a cursor this API did not give is refused."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        venue, symbol, start, end, (t, e, s, i) = json.loads(text)
        f = Filter(venue, symbol, start, end)
        key = (int(t), str(e), str(s), int(i))
        if not all(v is None or isinstance(v, str) for v in (venue, symbol)) or not all(
            v is None or isinstance(v, int) for v in (start, end)
        ):
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as err:
        raise InputError("cursor is not one this API gave (pass the `next` of an answer)") from err
    return f, key
