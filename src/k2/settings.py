"""Typed settings: `k2.toml` plus `K2_` environment variables (`__` nests), built at entry points.

Precedence: explicit arguments > environment > the TOML file > defaults. Unknown keys anywhere are
an error that names the key, so a typo never reads as "not set".
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from k2.errors import ConfigError

ENV_PREFIX = "K2_"
CONFIG_ENV = "K2_CONFIG"  # path of the TOML file; not itself a setting
DEFAULT_CONFIG_FILE = "k2.toml"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
MIN_TOKEN_CHARS = 16
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _secret(value: SecretStr | None, path: Path | None, setting: str) -> str | None:
    """A secret from its setting, or from the file its `<setting>_file` names (a secret mount);
    None when neither is set."""
    if value is not None:
        return value.get_secret_value()
    if path is None:
        return None
    try:
        text = path.read_text().strip()
    except OSError as err:
        raise ConfigError(f"{setting}_file {path}: {err.strerror or err}") from None
    if not text:
        raise ConfigError(f"{setting}_file {path} is empty")
    return text


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VenueSettings(_Section):
    """Per-venue overrides; anything left unset takes the adapter's documented default."""

    enabled: bool = True
    ws_url: str | None = None
    rest_url: str | None = None
    # Planned disconnect: rotate (make-before-break) this long before the venue's connection cut.
    max_connection_age_s: float | None = None
    rotate_margin_s: float = 300.0
    # Reconnect a connection that received nothing (heartbeats included) for this long.
    heartbeat_timeout_s: float | None = None
    # A trade id more than this far above the highest seen is held as suspect (default: the
    # adapter's max_id_jump, about a day of the venue's busiest symbol).
    max_id_jump: int | None = Field(None, ge=1)


class IngestSettings(_Section):
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_multiplier: float = 2.0
    backoff_jitter: float = Field(0.3, ge=0, le=1)  # fraction of the delay drawn at random
    backoff_reset_after_s: float = 60.0  # a connection healthy this long resets the backoff
    connect_timeout_s: float = 10.0
    ping_interval_s: float = 20.0  # send a protocol ping after this long without incoming data
    # drop the connection if no pong within this (at most the interval)
    ping_timeout_s: float = 20.0
    gap_grace_s: float = 0.3  # wait this long for out-of-order messages before REST repair
    gap_retry_for_s: float = 600.0  # keep retrying a failing repair this long, then give up
    rest_timeout_s: float = 10.0
    recent_ids: int = Field(20_000, ge=100)  # per-symbol dedupe window (non-contiguous ids)
    # A trade's event time may be at most this far ahead of the local clock (later: a reject).
    max_clock_skew_s: float = Field(86_400.0, ge=0)
    check_listing: bool = True  # check instruments against the venue's listing at start
    quarantine_file: Path | None = None  # where `k2 watch` quarantines rejects (default: data dir)


class WriterSettings(_Section):
    batch_rows: int = Field(50_000, ge=1)
    batch_interval_ms: int = Field(100, ge=1)
    max_pending_rows: int = Field(100_000, ge=1)  # feeds wait (backpressure) beyond this


class BusSettings(_Section):
    """The cluster shape's Kafka bus (docs/CLUSTER.md): `k2 feed` publishes to it, `k2 ingest`
    consumes it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = Field("k2", pattern=r"^[A-Za-z0-9._-]+$")
    # when K2 creates the topics: as many as ingest members (docs/CLUSTER.md, "Scaling ingest")
    partitions: int = Field(4, ge=1)
    replication_factor: int = Field(1, ge=1)
    group_id: str = "k2-ingest"
    # The producer's local buffer while the broker is slow or down: beyond it the feeds wait.
    producer_buffer_messages: int = Field(100_000, ge=1)
    producer_buffer_kbytes: int = Field(262_144, ge=1)
    max_message_trades: int = Field(2_000, ge=1)  # a symbol's delivery is split above this
    consumers: int = Field(1, ge=1)  # consumers (group members) per `k2 ingest` process
    session_timeout_ms: int = Field(10_000, ge=1_000)
    # Extra librdkafka properties for every client (security.protocol, sasl.*, ssl.*, ...).
    client_properties: dict[str, str] = {}
    metrics_port: int = Field(0, ge=0, le=65535)  # /metrics of k2 feed and k2 ingest (0: none)


class HotStoreSettings(_Section):
    # chdb:///path (embedded ClickHouse) or http(s)://user:password@host:8123 (a ClickHouse
    # server); default: chDB in <data_dir>/hot
    url: SecretStr | None = None
    # Days of trades (by event time) bronze and silver keep, once the archive holds them: expiry
    # never deletes what is not archived (archive/retention.py).
    bronze_ttl_days: int = Field(7, ge=1)
    silver_ttl_days: int = Field(30, ge=1)

    @property
    def shortest_retention_days(self) -> int:
        return min(self.bronze_ttl_days, self.silver_ttl_days)


class S3Settings(_Section):
    """Where an `s3://` warehouse lives (README, "Configuration"). Keys are explicit, never
    looked up: K2 does not ask cloud metadata endpoints for a region or credentials."""

    endpoint: str | None = None  # http(s)://host:port of MinIO, Ceph, moto...; None: AWS itself
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None  # K2_ARCHIVE__S3__ACCESS_KEY_ID; or access_key_id_file
    access_key_id_file: Path | None = None  # a file holding it (one line: a secret mount)
    secret_access_key: SecretStr | None = None  # or secret_access_key_file
    secret_access_key_file: Path | None = None
    path_style: bool = True  # http://endpoint/bucket/key (MinIO, moto); False: bucket.endpoint

    @model_validator(mode="after")
    def _one_source_each(self) -> S3Settings:
        for key in ("access_key_id", "secret_access_key"):
            if getattr(self, key) is not None and getattr(self, f"{key}_file") is not None:
                raise ValueError(f"set archive.s3.{key} or archive.s3.{key}_file, not both")
        return self

    def key(self, name: str) -> str:
        """`access_key_id` or `secret_access_key`, from the setting or its file."""
        text = _secret(getattr(self, name), getattr(self, f"{name}_file"), f"archive.s3.{name}")
        if text is None:
            raise ConfigError(
                f"an s3:// warehouse needs archive.s3.{name} (K2_ARCHIVE__S3__{name.upper()}) "
                f"or archive.s3.{name}_file"
            )
        return text


class ArchiveSettings(_Section):
    catalog_uri: SecretStr | None = None  # default: SQLite under <data_dir>/lake
    warehouse: str | None = None  # default: file://<data_dir>/lake/warehouse; or s3://bucket/path
    s3: S3Settings = S3Settings()  # for an s3:// warehouse
    catalog_properties: dict[str, str] = {}  # extra pyiceberg catalog properties (they win)
    offload_cron: str = "*/15 * * * *"
    maintenance_cron: str = "0 2 * * *"
    reconcile_cron: str = "30 2 * * *"
    schedule_enabled: bool = True
    chunk_rows: int = Field(1_000_000, ge=1)
    chunk_bytes: int = Field(64 * 2**20, ge=1)  # a trade chunk's rows, uncompressed, about this
    candle_lookback_minutes: int = Field(180, ge=0)
    snapshot_max_age_days: float = Field(7.0, gt=0)
    snapshot_min_keep: int = Field(3, ge=1)
    orphan_min_age_hours: float = Field(24.0, ge=0)
    target_file_mb: int = Field(128, ge=1)
    small_file_mb: int = Field(32, ge=1)
    retries: int = Field(3, ge=0)
    retry_delay_s: float = Field(10.0, ge=0)

    @field_validator("offload_cron", "maintenance_cron", "reconcile_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        import datetime as dt

        from cronsim import CronSim, CronSimError

        try:
            CronSim(value, dt.datetime.now(dt.UTC))
        except CronSimError as err:
            raise ValueError(f"invalid cron expression {value!r}: {err}") from None
        return value

    @model_validator(mode="after")
    def _s3_keys_given(self) -> ArchiveSettings:
        if self.warehouse and self.warehouse.startswith("s3://"):
            for name, prop in (
                ("access_key_id", "s3.access-key-id"),
                ("secret_access_key", "s3.secret-access-key"),
            ):
                given = getattr(self.s3, name) is not None or getattr(self.s3, f"{name}_file")
                if not given and prop not in self.catalog_properties:
                    raise ValueError(
                        f"an s3:// warehouse needs archive.s3.{name} "
                        f"(K2_ARCHIVE__S3__{name.upper()}) or archive.s3.{name}_file"
                    )
        return self

    @property
    def crons(self) -> dict[str, str]:
        """Each archive flow's schedule, by flow name."""
        return {
            "offload": self.offload_cron,
            "maintenance": self.maintenance_cron,
            "reconcile": self.reconcile_cron,
        }


class ApiSettings(_Section):
    """Where the API listens, and who may use it (docs/API.md, "Exposing the API").

    Loopback with no credential is the default. Any other address needs a bearer token, and the
    names clients reach it by (the Host header) are listed, so that a foreign page cannot reach it
    through DNS rebinding.
    """

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: SecretStr | None = None  # bearer token clients must send (K2_API__TOKEN); or token_file
    token_file: Path | None = None  # a file holding the token (one line)
    allowed_hosts: list[str] = []  # Host names accepted besides loopback and api.host ("*": any)
    tls_cert_file: Path | None = None  # serve HTTPS with this certificate chain (PEM) ...
    tls_key_file: Path | None = None  # ... and this private key

    @field_validator("host")
    @classmethod
    def _host_not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("host must not be empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ApiSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set api.token or api.token_file, not both")
        if self.token is not None and len(self.token.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"api.token must be at least {MIN_TOKEN_CHARS} characters")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both api.tls_cert_file and api.tls_key_file, or neither")
        return self

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert_file is not None else "http"

    def bearer_token(self) -> str | None:
        """The token clients must send, read from api.token or api.token_file (None: no auth)."""
        token = _secret(self.token, self.token_file, "api.token")
        if token is None or self.token is not None:  # (the setting's length is validated)
            return token
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"api.token_file {self.token_file} must hold a token of at least "
                f"{MIN_TOKEN_CHARS} characters"
            )
        return token


class MetricsSettings(_Section):
    enabled: bool = True  # serve /metrics and observe the histograms on the ingest path
    # What "memory near its limit" compares RSS with; default: the cgroup limit, else total RAM.
    memory_limit_bytes: int | None = Field(None, gt=0)


class HealthSettings(_Section):
    """Thresholds `k2 health` and `/health` judge by (the alert rules use the same defaults)."""

    feed_down_s: float = Field(60.0, gt=0)  # a feed not live this long fails
    symbol_silent_s: float = Field(900.0, gt=0)  # a symbol without trades this long warns
    fresh_warn_s: float = Field(60.0, gt=0)  # newest hot row older than this warns
    fresh_fail_s: float = Field(300.0, gt=0)
    offload_lag_warn_s: float = Field(1800.0, gt=0)  # beyond a candle table's own window length
    offload_lag_fail_s: float = Field(3600.0, gt=0)
    offload_failures_warn: int = Field(1, ge=1)  # consecutive failed offloads of a table
    offload_failures_fail: int = Field(3, ge=1)
    maintenance_max_age_h: float = Field(26.0, gt=0)
    reconcile_max_age_h: float = Field(26.0, gt=0)
    disk_warn_pct: float = Field(10.0, ge=0, le=100)  # free space of the data directory's disk
    disk_fail_pct: float = Field(5.0, ge=0, le=100)
    prefect_start_fail_s: float = Field(180.0, gt=0)  # Prefect's API not answering this long fails
    # the cluster shape (when bus.bootstrap_servers is set): see docs/CLUSTER.md, "Operations"
    bus_silent_s: float = Field(60.0, gt=0)  # a process without a heartbeat this long fails
    bus_lag_warn_messages: int = Field(50_000, ge=1)  # the ingest group's lag on one partition
    bus_lag_fail_messages: int = Field(500_000, ge=1)
    bus_forget_h: float = Field(24.0, gt=0)  # a process's last heartbeat is shown this long


class SimulatorSettings(_Section):
    seed: int = 1
    host: str = "127.0.0.1"
    trades_per_second: float = Field(5.0, gt=0)  # per symbol
    # Bursts: every `burst_every_s` seconds (0: never), `burst_factor` times the rate for
    # `burst_for_s` seconds, as markets move in spurts.
    burst_every_s: float = Field(0.0, ge=0)
    burst_for_s: float = Field(10.0, ge=0)
    burst_factor: float = Field(10.0, ge=1)
    faults: str = "none"  # none | all | comma-separated fault names (checked when loaded)
    disconnect_every_s: float = 20.0
    connection_max_age_s: float = 30.0  # the compressed "24-hour" cut
    ping_interval_s: float = 5.0
    history_per_symbol: int = Field(50_000, ge=1000)
    fault_seconds: float | None = None  # faults stop this long after the market opens (None: never)
    record_file: Path | None = None  # ground truth (every trade generated) for in-process runs

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: str) -> str:
        from k2.simulator.faults import parse_faults

        try:
            parse_faults(value)
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return value


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
