"""The settings' sections that say what K2 captures and where it keeps it: venues, ingest, the
writer, the bus, the hot store and the archive. `k2.settings` assembles them."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from k2.errors import ConfigError


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
    # What each ingest consumer's client fetches ahead of it, per partition: librdkafka's 64 MiB
    # default held about 700 MB in a k2 ingest behind a firehose (1.7 GB peak; 0.97 GB with this).
    consumer_queue_kbytes: int = Field(16_384, ge=1)
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
    # chDB only: the bound, in MiB, of each of ClickHouse's mark, primary-index and skip-index mark
    # caches. A ClickHouse server's default is 5 GiB each; inside `k2 up` they grew with every
    # table the daily flows read whole. A server keeps its own configuration.
    embedded_cache_mb: int = Field(128, ge=1)

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
