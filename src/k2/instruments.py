"""The instruments file: which symbols to capture on which venue."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from k2.errors import ConfigError, InputError

Instruments = dict[str, tuple[str, ...]]


def default_instruments_text() -> str:
    """Return the packaged default instruments file."""
    return resources.files("k2").joinpath("instruments.toml").read_text(encoding="utf-8")


def load_instruments(path: Path | None = None) -> Instruments:
    """Load and validate an instruments file (the packaged default when `path` is None)."""
    from k2.exchanges import VENUE_NAMES

    where = str(path) if path else "packaged instruments.toml"
    try:
        text = path.read_text(encoding="utf-8") if path else default_instruments_text()
        data = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"instruments file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where}: not valid TOML: {err}") from None
    result: Instruments = {}
    for venue, section in data.items():
        if venue not in VENUE_NAMES:
            raise ConfigError(f"{where}: unknown venue {venue!r}; known: {', '.join(VENUE_NAMES)}")
        if not isinstance(section, dict) or set(section) != {"symbols"}:
            raise ConfigError(f"{where}: [{venue}] must contain exactly one key, 'symbols'")
        symbols = section["symbols"]
        if not isinstance(symbols, list) or not all(isinstance(s, str) and s for s in symbols):
            raise ConfigError(f"{where}: [{venue}] symbols must be a list of non-empty strings")
        dupes = sorted({s for s in symbols if symbols.count(s) > 1})
        if dupes:
            raise ConfigError(f"{where}: [{venue}] lists {dupes[0]!r} more than once")
        result[venue] = tuple(symbols)
    return result


@dataclass(frozen=True)
class Instrument:
    venue: str
    symbol: str  # the venue's own spelling
    canonical: str  # BASE/QUOTE


def catalog(instruments: Instruments) -> list[Instrument]:
    """Every instrument in the file, with its canonical symbol, in file order."""
    from k2.exchanges import make_adapter

    out: list[Instrument] = []
    for venue, symbols in instruments.items():
        adapter = make_adapter(venue)
        out.extend(Instrument(venue, s, adapter.canonical(s)) for s in symbols)
    return out


def _pick(given: str, names: dict[str, str], what: str, where: str = "") -> str:
    """What `given` names among `names` (each accepted spelling -> what it stands for), ignoring
    case; otherwise an InputError with the closest spelling as a suggestion."""
    key = given.strip().upper()
    found = {meant for name, meant in names.items() if name.upper() == key}
    if len(found) == 1:
        return found.pop()
    if found:
        raise InputError(f"{what} {given!r}{where} is ambiguous: {', '.join(sorted(found))}")
    close = difflib.get_close_matches(key, [n.upper() for n in names], n=1, cutoff=0.6)
    hint = next(f"; did you mean {n}?" for n in names if n.upper() == close[0]) if close else ""
    known = sorted(names)
    listing = ", ".join(known) if len(known) <= 12 else "see `k2 symbols`"
    raise InputError(f"unknown {what} {given!r}{where}{hint} (known: {listing})")


def resolve_venue(given: str, instruments: Instruments) -> str:
    """The venue `given` names (any case), or an InputError naming the choices."""
    return _pick(given, {v: v for v in instruments}, "venue")


def resolve_symbol(given: str, instruments: Instruments, venue: str | None = None) -> str:
    """The canonical symbol `given` names, as canonical (btc/usdt) or as a venue spells it
    (BTCUSDT, BTC-USD), on `venue` if given; otherwise an InputError with a suggestion."""
    names: dict[str, str] = {}
    for item in catalog(instruments):
        if venue is None or item.venue == venue:
            names[item.canonical] = names[item.symbol] = item.canonical
    return _pick(given, names, "symbol", f" on {venue}" if venue else "")


def resolve_filters(
    instruments: Instruments, venue: str | None, symbol: str | None
) -> tuple[str | None, str | None]:
    """A query's --venue and --symbol, checked against the instruments:
    (venue, canonical symbol)."""
    venue = resolve_venue(venue, instruments) if venue else None
    return venue, resolve_symbol(symbol, instruments, venue) if symbol else None
