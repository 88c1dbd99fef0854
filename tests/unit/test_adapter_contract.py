"""Every registered venue keeps the adapter contract; generic code relies on nothing else."""

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from k2.errors import ParseError
from k2.exchanges import VENUE_NAMES, make_adapter
from k2.exchanges.base import Parsed, RestPolicy, as_parsed
from k2.records import BUY, SELL
from tests.conftest import SAMPLES

NOW = 1_800_000_000_000_000_123  # the local clock the samples are parsed at (after all of them)

# Messages each venue's parse must accept (one per variant), from the documented samples.
VALID = {
    "binance": [
        "binance-trade.json",
        "binance-servershutdown-combined.json",
        "binance-subscribe-response.json",
    ],
    "kraken": ["kraken-snapshot.json", "kraken-heartbeat.json", "kraken-pong.json"],
    "coinbase": ["coinbase-market_trades.json", "coinbase-heartbeats.json"],
}


def test_every_venue_has_contract_samples() -> None:
    assert set(VALID) == set(VENUE_NAMES)


@pytest.fixture(params=VENUE_NAMES)
def venue(request: pytest.FixtureRequest) -> str:
    return request.param


def test_declared_values(venue: str) -> None:
    a = make_adapter(venue)
    assert a.name == venue
    assert a.docs_url.startswith("https://")
    assert a.default_ws_url.startswith("wss://") and a.default_rest_url.startswith("https://")
    assert isinstance(a.contiguous_ids, bool)
    assert a.heartbeat_timeout_s is None or a.heartbeat_timeout_s > 0
    assert a.max_connection_age_s is None or a.max_connection_age_s > 3600
    assert isinstance(a.rest_policy, RestPolicy) and a.rest_policy.requests_per_second > 0


def test_subscribe_messages_are_json(venue: str) -> None:
    a = make_adapter(venue)
    url = a.ws_url(a.default_ws_url, ["AAA"])
    assert url.startswith(a.default_ws_url.rstrip("/"))
    for message in a.subscribe_messages(["AAA"]):
        assert isinstance(json.loads(message), dict)


def test_samples_parse_to_normalized_trades(venue: str) -> None:
    a = make_adapter(venue)
    for name in VALID[venue]:
        parsed = as_parsed(a.parse((SAMPLES / name).read_bytes(), NOW))
        assert isinstance(parsed, Parsed)
        for t in parsed.trades:
            assert t.exchange == venue
            assert "/" in t.canonical_symbol and t.canonical_symbol == t.canonical_symbol.upper()
            assert isinstance(t.trade_id, int) and t.trade_id >= 0
            assert t.price > 0 and t.amount > 0 and t.price.is_finite()
            assert t.taker_side in (BUY, SELL)
            assert t.ts_event > 10**18 and t.ts_recv == NOW
            assert t.raw


def test_empty_and_garbage_raise_parse_error(venue: str) -> None:
    a = make_adapter(venue)
    for bad in (b"", b"{", b"null", b"[1,2]", b'{"unknown": true}', b"\x00\xff"):
        with pytest.raises(ParseError):
            a.parse(bad, NOW)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_parse_error(venue: str, data: bytes) -> None:
    a = make_adapter(venue)
    try:
        a.parse(data, NOW)
    except ParseError:
        pass


def _all_samples(venue: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(SAMPLES.glob(f"{venue}-*.json"))]


def _mutate_json(value: object, rng: random.Random) -> object:
    """Replace, delete or retype one node somewhere in a JSON value."""
    replacements = [None, True, -1, 0, 1.5e300, "", "x", "-1", "NaN", "1e400", [], {}, 2**70]
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value))
        out = dict(value)
        action = rng.random()
        if action < 0.3:
            del out[key]
        elif action < 0.6:
            out[key] = rng.choice(replacements)
        else:
            out[key] = _mutate_json(value[key], rng)
        return out
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        out_list = list(value)
        out_list[i] = (
            _mutate_json(value[i], rng) if rng.random() < 0.6 else rng.choice(replacements)
        )
        return out_list
    return rng.choice(replacements)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32), flips=st.integers(0, 3))
def test_mutated_real_messages_raise_only_parse_error(venue: str, seed: int, flips: int) -> None:
    rng = random.Random(seed)
    a = make_adapter(venue)
    for raw in _all_samples(venue):
        mutated = json.dumps(_mutate_json(json.loads(raw), rng)).encode()
        data = bytearray(mutated)
        for _ in range(flips):  # and some byte-level damage on top
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        for candidate in (mutated, bytes(data)):
            try:
                parsed = as_parsed(a.parse(candidate, NOW))
            except ParseError:
                continue
            for t in parsed.trades:  # whatever is accepted is still a valid trade
                assert (
                    t.price > 0 and t.amount > 0 and t.taker_side in (BUY, SELL) and t.trade_id >= 0
                )


def _outcome(adapter: object, raw: bytes) -> object:
    try:
        parsed = as_parsed(adapter.parse(raw, NOW))  # type: ignore[attr-defined]
    except ParseError as err:
        return "rejected", err.reason
    return parsed.trades, [e.reason for e in parsed.rejected], parsed.signal, parsed.sequence


@settings(max_examples=300, deadline=None)
@given(
    venue=st.sampled_from(["kraken", "coinbase"]),
    seed=st.integers(0, 2**32),
    flips=st.integers(0, 2),
)
def test_the_batch_fast_path_agrees_with_trade_by_trade_parsing(
    venue: str, seed: int, flips: int
) -> None:
    # Venues that batch trades parse a message in one go and fall back to their per-trade `_trade`
    # only when something is off; the answer must be the same either way.
    rng = random.Random(seed)
    fast, slow = make_adapter(venue), make_adapter(venue)
    slow._trades = lambda *args: False  # type: ignore[attr-defined]  # always trade by trade
    for raw in _all_samples(venue):
        mutated = json.dumps(_mutate_json(json.loads(raw), rng)).encode()
        data = bytearray(mutated)
        for _ in range(flips):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        for candidate in (raw, mutated, bytes(data)):
            assert _outcome(fast, candidate) == _outcome(slow, candidate)
