"""K2: exact trade capture, a hot ClickHouse store and an exactly-once Iceberg archive."""

__version__ = "0.1.0"
