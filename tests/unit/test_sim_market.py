from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k2.errors import ConfigError
from k2.exchanges import VENUE_NAMES
from k2.settings import load_settings
from k2.simulator import Simulator
from k2.simulator.market import fmt_fixed, fmt_min
from k2.simulator.simulator import SIMULATED_VENUES, from_settings


@given(st.integers(0, 10**20), st.integers(0, 18))
def test_fixed_point_text_is_exact(units: int, decimals: int) -> None:
    text = fmt_fixed(units, decimals)
    expected = Decimal(units).scaleb(-decimals)
    assert text == format(expected, "f")  # every decimal, one leading zero below 1
    short = fmt_min(units, decimals)
    assert Decimal(short) == expected
    assert "." not in short or not short.endswith(("0", "."))  # no trailing zeros, no bare point


def test_every_registered_venue_has_a_simulator() -> None:
    assert set(SIMULATED_VENUES) == set(VENUE_NAMES)


def test_a_venue_the_simulator_cannot_serve_is_refused_not_left_pointing_at_the_real_one() -> None:
    with pytest.raises(ConfigError, match="cannot serve venue 'nowhere'"):
        Simulator({"binance": ("BTCUSDT",), "nowhere": ("X-Y",)})


def test_only_enabled_venues_are_simulated() -> None:
    settings = load_settings(venues={"kraken": {"enabled": False}})
    sim = from_settings(settings, {"binance": ("BTCUSDT",), "kraken": ("BTC/USD",)})
    assert set(sim.servers) == {"binance"}


def test_bursts_multiply_the_rate_for_their_length_every_period() -> None:
    settings = load_settings(
        simulator={
            "trades_per_second": 5,
            "burst_every_s": 60,
            "burst_for_s": 10,
            "burst_factor": 20,
        }
    )
    sim = from_settings(settings, {"binance": ("BTCUSDT",)})
    second = 1_000_000_000
    minute = 1_800_000_000 // 60 * 60 * second  # a whole minute: a burst starts here
    assert sim.rate_at(minute) == 100 and sim.rate_at(minute + 9 * second) == 100
    assert sim.rate_at(minute + 10 * second) == 5 and sim.rate_at(minute + 59 * second) == 5
    assert from_settings(load_settings(), {"binance": ("BTCUSDT",)}).rate_at(minute) == 5
