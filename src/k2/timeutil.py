"""Exact conversions between RFC 3339 text and integer UTC nanoseconds (no float anywhere)."""

from __future__ import annotations

import calendar
import datetime
import re
import time

from k2.errors import InputError, ParseError

_NS = 1_000_000_000
# ns per unit of an n-digit fraction
_SCALE: tuple[int, ...] = tuple(10 ** (9 - n) for n in range(10))
_day_cache: dict[str, int] = {}
# "YYYY-MM-DDTHH:MM:SS." -> that second in ns (and a whole "YYYY-MM-DDTHH:MM:SSZ" -> its ns):
# trades arrive many per second, so only the fraction is parsed, and the slow path runs
# once a second.
_second_cache: dict[str, int] = {}


def rfc3339_to_ns(text: str) -> int:
    """Parse an RFC 3339 / ISO 8601 UTC timestamp with up to 9 fractional digits into ns.

    Accepts a `Z` or numeric offset and either `T` or a space between date and time.
    """
    base = _second_cache.get(text[:20])
    if base is not None:
        # a cached "YYYY-MM-DDTHH:MM:SS." prefix: text must be <prefix><digits>Z
        if text[19] == ".":
            frac = text[20:-1]
            if text[-1] == "Z" and len(frac) <= 9 and frac.isdigit() and frac.isascii():
                return base + int(frac) * _SCALE[len(frac)]
        elif len(text) == 20:  # a cached whole-second "YYYY-MM-DDTHH:MM:SSZ"
            return base
    value = _parse_slow(text)
    if len(_second_cache) > 4096:
        _second_cache.clear()
    if text[19:20] == "." and text[-1] in "Zz":
        _second_cache[text[:20]] = value - value % _NS
    elif len(text) == 20 and text[-1] in "Zz":
        _second_cache[text] = value
    return value


def _parse_slow(text: str) -> int:
    try:
        date = text[:10]
        base = _day_cache.get(date)
        if base is None:
            if len(date) != 10 or date[4] != "-" or date[7] != "-":
                raise ValueError
            base = calendar.timegm((int(date[:4]), int(date[5:7]), int(date[8:10]), 0, 0, 0))
            if len(_day_cache) > 4096:
                _day_cache.clear()
            _day_cache[date] = base
        if text[10] not in "Tt " or text[13] != ":" or text[16] != ":":
            raise ValueError
        seconds = base + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
        rest = text[19:]
        frac_ns = 0
        if rest[:1] in (".", ","):
            i = 1
            while i < len(rest) and rest[i].isdigit():
                i += 1
            digits = rest[1:i]
            if not 0 < len(digits) <= 9:
                raise ValueError
            frac_ns = int(digits) * 10 ** (9 - len(digits))
            rest = rest[i:]
        if rest in ("Z", "z"):
            offset = 0
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            offset = (int(rest[1:3]) * 3600 + int(rest[4:6]) * 60) * (1 if rest[0] == "+" else -1)
        else:
            raise ValueError
        return (seconds - offset) * _NS + frac_ns
    except (ValueError, IndexError):
        raise ParseError(f"bad RFC 3339 timestamp {text!r}", text) from None


_prefix_cache: dict[int, str] = {}


def ns_to_rfc3339(ns: int) -> str:
    """Format integer UTC nanoseconds as RFC 3339 with all nine fractional digits and `Z`."""
    seconds, frac = divmod(ns, _NS)
    prefix = _prefix_cache.get(seconds)  # many trades per second share "YYYY-MM-DDTHH:MM:SS."
    if prefix is None:
        if len(_prefix_cache) > 4096:
            _prefix_cache.clear()
        prefix = _prefix_cache[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))
    return f"{prefix}{frac:09d}Z"


def now_ns() -> int:
    """Return the wall clock as UTC ns."""
    return time.time_ns()


# The times a store can hold: DateTime64(9) is int64 ns, 1677-09-21 to 2262-04-11.
MIN_NS, MAX_NS = -(2**63), 2**63 - 1
_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def user_time(text: str, what: str = "time", now: int | None = None) -> int:
    """Parse a time a user typed into UTC ns: RFC 3339, a date (midnight UTC), or a duration ago
    (90s, 15m, 2h, 1d). Anything else, or a time outside 1677-09-21..2262-04-11, is an
    InputError."""
    now = time.time_ns() if now is None else now
    value = text.strip()
    ns: int
    match = _AGO.match(value)
    if match:
        whole, _, frac = match.group(1).partition(".")
        unit = _UNIT[match.group(2)] * _NS
        ns = now - (int(whole) * unit + int(frac or "0") * unit // 10 ** len(frac or "0"))
    else:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            value += "T00:00:00Z"
        try:
            ns = rfc3339_to_ns(value)
            # The parser above is lenient for speed (2026-02-30 is March 2nd): a user's time is not.
            datetime.datetime(
                int(value[:4]),
                int(value[5:7]),
                int(value[8:10]),
                int(value[11:13]),
                int(value[14:16]),
                int(value[17:19]),
            )
        except (ParseError, ValueError):
            raise InputError(
                f"{what}: {text!r} is not a time; use RFC 3339 (2026-01-02T03:04:05Z), "
                "a date (2026-01-02) or a duration ago (90s, 15m, 2h, 1d)"
            ) from None
    if not MIN_NS <= ns <= MAX_NS:
        raise InputError(
            f"{what}: {text!r} is outside the times K2 can store (1677-09-21 to 2262-04-11)"
        )
    return ns
