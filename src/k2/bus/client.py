"""Kafka clients as K2 configures them, the topics K2 creates, and partitioning by key."""

from __future__ import annotations

import logging
import zlib
from typing import Any

from k2.bus.topics import rejects_topic, status_topic, trades_topic
from k2.errors import ConfigError
from k2.settings import BusSettings

log = logging.getLogger(__name__)
_kafka_log = logging.getLogger("k2.bus.librdkafka")


def config(settings: BusSettings, **own: Any) -> dict[str, Any]:
    """A client's librdkafka configuration: the bootstrap servers, K2's choices, the operator's
    extra properties (which win)."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "logger": _kafka_log,  # librdkafka's own lines, through logging (not raw stderr)
        **own,
        **settings.client_properties,
    }


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a key: stable, so a feed finds its symbols' last messages after a
    restart without reading every partition (bus/resume.py)."""
    return zlib.crc32(key) % partitions


def ensure_topics(settings: BusSettings, timeout_s: float = 30.0) -> dict[str, int]:
    """Create K2's topics if missing; return each one's partition count (the status topic has
    one partition: `k2 health` reads its tail)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient(config(settings))
    prefix = settings.topic_prefix
    names = [trades_topic(prefix), rejects_topic(prefix), status_topic(prefix)]
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as err:
        raise ConfigError(
            f"cannot reach the Kafka bus at {settings.bootstrap_servers} (setting "
            f"bus.bootstrap_servers): {err.args[0].str() if err.args else err}"
        ) from None
    missing = [n for n in names if n not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    n,
                    1 if n == status_topic(prefix) else settings.partitions,
                    settings.replication_factor,
                )
                for n in missing
            ],
            operation_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result(timeout_s)
                log.info("bus: created topic %s", name)
            except KafkaException as err:
                if "TOPIC_ALREADY_EXISTS" not in str(err):  # another process made it first
                    raise
        existing = admin.list_topics(timeout=timeout_s).topics
    return {n: len(existing[n].partitions) for n in names}
