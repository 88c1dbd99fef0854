import calendar
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2.errors import ParseError
from k2.timeutil import _parse_slow, ns_to_rfc3339, rfc3339_to_ns


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2023-09-25T07:48:36.925533Z", 1695628116_925533000),
        ("2019-08-14T20:42:27.265Z", 1565815347_265000000),
        ("2023-02-09T20:19:35.39625135Z", 1675973975_396251350),
        ("2024-01-01T00:00:00Z", 1704067200_000000000),
        ("2024-01-01T02:00:00.000000001+02:00", 1704067200_000000001),
        ("2023-06-23 20:31:56.121961769Z", 1687552316_121961769),
    ],
)
def test_parse(text: str, ns: int) -> None:
    assert rfc3339_to_ns(text) == ns


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "yesterday",
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2024-13-01T00:00:00Z",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00.1234567890Z",
        "2024-01-01T00:00:00+0100",
    ],
)
def test_bad_timestamps(bad: str) -> None:
    with pytest.raises(ParseError):
        rfc3339_to_ns(bad)


@given(st.integers(0, 4_000_000_000 * 10**9))
def test_round_trip(ns: int) -> None:
    text = ns_to_rfc3339(ns)
    assert text.endswith("Z") and len(text) == 30
    assert rfc3339_to_ns(text) == ns


def test_agrees_with_datetime() -> None:
    d = dt.datetime(2026, 11, 22, 13, 5, 7, 123456, tzinfo=dt.UTC)
    assert (
        rfc3339_to_ns(d.isoformat().replace("+00:00", "Z"))
        == calendar.timegm(d.timetuple()) * 10**9 + 123456000
    )


SECOND = "2026-11-29T13:43:34"


def assert_fast_path_agrees(text: str) -> None:
    """rfc3339_to_ns, with `text`'s second cached, equals the full parser (or both raise)."""
    rfc3339_to_ns(SECOND + ".5Z")  # both caches hold this second: the fast path runs
    rfc3339_to_ns(SECOND + "Z")
    try:
        expected = _parse_slow(text)
    except ParseError:
        with pytest.raises(ParseError):
            rfc3339_to_ns(text)
    else:
        assert rfc3339_to_ns(text) == expected


@pytest.mark.parametrize(
    "suffix",
    [
        ".",
        "Z123Z",
        "Z.5Z",
        ".1234567890Z",
        ".12a4Z",
        ".\u0663Z",
        ".5z",
        "Zz",
        ".5+00:00",
        ".Z",
        "Z",
        "z",
        ".000000001Z",
    ],
)
def test_the_cached_fast_path_on_the_edges(suffix: str) -> None:
    assert_fast_path_agrees(SECOND + suffix)


@given(
    st.sampled_from([SECOND, SECOND + ".", SECOND + "Z"]),
    st.text(alphabet="0123456789.Zz+-: T\u0663", max_size=12),
)
def test_the_cached_fast_path_accepts_exactly_what_the_full_parser_does(
    prefix: str, suffix: str
) -> None:
    assert_fast_path_agrees(prefix + suffix)
