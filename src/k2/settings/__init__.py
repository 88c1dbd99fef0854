"""Typed settings: `k2.toml` plus `K2_` environment variables (`__` nests), built at entry points.

Precedence: explicit arguments > environment > the TOML file > defaults. Unknown keys anywhere are
an error that names the key, so a typo never reads as "not set".
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from k2.errors import ConfigError
from k2.settings.sections import (
    ArchiveSettings,
    BusSettings,
    HotStoreSettings,
    IngestSettings,
    S3Settings,
    VenueSettings,
    WriterSettings,
)
from k2.settings.serving import (
    LOOPBACK_HOSTS,
    ApiSettings,
    HealthSettings,
    MetricsSettings,
    SimulatorSettings,
)

ENV_PREFIX = "K2_"
CONFIG_ENV = "K2_CONFIG"  # path of the TOML file; not itself a setting
DEFAULT_CONFIG_FILE = "k2.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Every setting K2 has. Build with `load_settings()` at an entry point only."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = Path("data")
    instruments_file: Path | None = None  # default: the packaged instruments.toml
    log_level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)
    # A stop (Ctrl-C, SIGTERM, --duration) ends `k2 up` and `k2 watch` within this long, whatever
    # the store or the venues are doing: queued gap repairs and the last batch get this long.
    shutdown_grace_s: float = Field(15.0, ge=1)
    venues: dict[str, VenueSettings] = {}
    ingest: IngestSettings = IngestSettings()
    writer: WriterSettings = WriterSettings()
    bus: BusSettings = BusSettings()
    hotstore: HotStoreSettings = HotStoreSettings()
    archive: ArchiveSettings = ArchiveSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    health: HealthSettings = HealthSettings()
    simulator: SimulatorSettings = SimulatorSettings()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r}; choose from {', '.join(LOG_LEVELS)}")
        return value.upper()

    @field_validator("venues")
    @classmethod
    def _known_venues(cls, value: dict[str, VenueSettings]) -> dict[str, VenueSettings]:
        from k2.exchanges import VENUE_NAMES

        unknown = sorted(set(value) - set(VENUE_NAMES))
        if unknown:
            raise ValueError(
                f"unknown venue {unknown[0]!r}; known venues: {', '.join(VENUE_NAMES)}"
            )
        return value

    def venue(self, name: str) -> VenueSettings:
        """Return the settings for one venue (defaults when the file names none)."""
        return self.venues.get(name, VenueSettings())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _TOML_PATH is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_TOML_PATH))
        return tuple(sources)


_TOML_PATH: Path | None = None
FAILPOINT_ENV = "K2_FAILPOINT_"  # a harness's faults (hotstore/clickhouse.py), not settings


def _check_env_names(environ: dict[str, str]) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for key in environ:
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV or key.startswith(FAILPOINT_ENV):
            continue
        top = key[len(ENV_PREFIX) :].split("__", 1)[0]
        if top not in fields:
            raise ConfigError(f"unknown setting in environment: {key}")


def _format_validation(err: ValidationError) -> str:
    lines = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"unknown setting {where!r}")
        else:
            lines.append(f"{where}: {item['msg']}")
    return "invalid settings: " + "; ".join(lines)


def with_venues(settings: Settings, overrides: dict[str, dict[str, Any]]) -> Settings:
    """Return a copy of `settings` with per-venue values replaced (e.g. simulator URLs)."""
    venues = dict(settings.venues)
    for name, values in overrides.items():
        venues[name] = settings.venue(name).model_copy(update=values)
    return settings.model_copy(update={"venues": venues})


def _env_error(err: Exception) -> str:
    """One line for a K2_ variable pydantic could not parse: which variables, and the rule."""
    text = str(err)
    field = text.split('"')[1] if text.count('"') >= 2 else ""
    names = sorted(n for n in os.environ if n.upper().startswith(f"{ENV_PREFIX}{field.upper()}"))
    which = ", ".join(names) or f"a {ENV_PREFIX} variable"
    cause = f" ({err.__cause__})" if err.__cause__ is not None else ""
    return (
        f"{which}: not a valid value for setting {field or '?'}{cause}; a list or table "
        f"setting takes JSON, e.g. {ENV_PREFIX}API__ALLOWED_HOSTS='[\"k2.example.org\"]'"
    )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from the TOML file (if any), `K2_` variables and explicit overrides."""
    global _TOML_PATH  # noqa: PLW0603 - pydantic's source hook takes no argument to pass it in
    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = Path(DEFAULT_CONFIG_FILE)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"config file not found: {path}"
            if not path.exists()
            else f"config file {path} is not a file"
        )
    _check_env_names(dict(os.environ))
    _TOML_PATH = path
    try:
        return Settings(**overrides)
    except ValidationError as err:
        raise ConfigError(_format_validation(err)) from None
    except SettingsError as err:  # a list or table setting's variable that is not JSON
        raise ConfigError(_env_error(err)) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"config file {path}: {err.strerror or err}") from None
    finally:
        _TOML_PATH = None


__all__ = [
    "CONFIG_ENV",
    "LOOPBACK_HOSTS",
    "ApiSettings",
    "ArchiveSettings",
    "BusSettings",
    "HealthSettings",
    "HotStoreSettings",
    "IngestSettings",
    "MetricsSettings",
    "S3Settings",
    "Settings",
    "SimulatorSettings",
    "VenueSettings",
    "WriterSettings",
    "load_settings",
    "with_venues",
]
