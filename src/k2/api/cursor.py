"""Opaque page cursors for /api/v1/trades and /api/v1/candles: where the next page (further back
in time) starts, with the filters of the first page, so paging stays on one query while rows keep
arriving."""

from __future__ import annotations

import base64
import binascii
import json

from k2.errors import InputError
from k2.query.tiers import Filter


def encode(kind: str, f: Filter, before: tuple[int | str, ...]) -> str:
    """The cursor of the page of `kind` ("trades", or a candle timeframe) matching `f` and ordered
    before `before`."""
    body = [kind, f.venue, f.symbol, f.start_ns, f.end_ns, list(before)]
    text = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def decode(cursor: str, kind: str) -> tuple[Filter, list[int | str]]:
    """The filters and the position a cursor of `kind` names; any other cursor is refused."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        given, venue, symbol, start, end, key = json.loads(text)
        ok = (
            given == kind
            and all(v is None or isinstance(v, str) for v in (venue, symbol))
            and all(v is None or isinstance(v, int) for v in (start, end))
            and isinstance(key, list)
            and len(key) == (4 if kind == "trades" else 3)
            and isinstance(key[0], int)
            and all(isinstance(v, str) for v in key[1:3])
            and (kind != "trades" or isinstance(key[3], int))
        )
        if not ok:
            raise ValueError(cursor)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as err:
        raise InputError(
            "cursor is not one this API gave for this query (pass the `next` of an answer)"
        ) from err
    return Filter(venue, symbol, start, end), key
