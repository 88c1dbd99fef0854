"""The settings' sections that say how K2 serves and watches: the API, metrics, health and the
simulator. `k2.settings` assembles them."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from k2.errors import ConfigError
from k2.settings.sections import _secret, _Section

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
MIN_TOKEN_CHARS = 16


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
    # Host names accepted besides loopback and api.host ("*": any)
    allowed_hosts: list[str] = Field(default_factory=list)
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
