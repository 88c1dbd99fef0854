"""The instruments file: which symbols to capture on which venue."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from k2.errors import ConfigError

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
