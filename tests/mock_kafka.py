"""librdkafka's mock cluster, driven through ctypes, for the bus's broker faults.

The library is the one bundled in the confluent-kafka wheel. Its mock cluster is a set of
Kafka-protocol brokers on loopback ports, run by librdkafka's own threads; its C API can take a
broker down and up and move a partition's leader, which no real broker process here can do on
demand. The clients under test connect to it over TCP like to any broker.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

_PRODUCER = 0  # rd_kafka_type_t


def _library() -> ctypes.CDLL:
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if not found:
        pytest.skip(f"no librdkafka in {libs}: the confluent-kafka wheel bundles it on Linux")
    lib = ctypes.CDLL(str(found[0]))
    p, i32, s = ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p
    for name, restype, argtypes in (
        ("rd_kafka_conf_new", p, []),
        ("rd_kafka_conf_set", ctypes.c_int, [p, s, s, s, ctypes.c_size_t]),
        ("rd_kafka_new", p, [ctypes.c_int, p, s, ctypes.c_size_t]),
        ("rd_kafka_destroy", None, [p]),
        ("rd_kafka_mock_cluster_new", p, [p, ctypes.c_int]),
        ("rd_kafka_mock_cluster_destroy", None, [p]),
        ("rd_kafka_mock_cluster_bootstraps", s, [p]),
        ("rd_kafka_mock_topic_create", ctypes.c_int, [p, s, ctypes.c_int, ctypes.c_int]),
        ("rd_kafka_mock_partition_set_leader", ctypes.c_int, [p, s, i32, i32]),
        ("rd_kafka_mock_broker_set_down", ctypes.c_int, [p, i32]),
        ("rd_kafka_mock_broker_set_up", ctypes.c_int, [p, i32]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


class MockCluster:
    """`brokers` mock brokers (ids 1..brokers), alive while this object is open."""

    def __init__(self, brokers: int = 3) -> None:
        self._lib = lib = _library()
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        lib.rd_kafka_conf_set(conf, b"log_level", b"3", errstr, len(errstr))
        self._rk = lib.rd_kafka_new(_PRODUCER, conf, errstr, len(errstr))
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new: {errstr.value.decode()}")
        self._cluster = lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            lib.rd_kafka_destroy(self._rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.brokers = list(range(1, brokers + 1))
        self.bootstrap_servers: str = lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()

    def _check(self, what: str, err: int) -> None:
        if err:
            raise RuntimeError(f"{what}: librdkafka error {err}")

    def create_topic(self, topic: str, partitions: int, replication_factor: int) -> None:
        err = self._lib.rd_kafka_mock_topic_create(
            self._cluster, topic.encode(), partitions, replication_factor
        )
        self._check(f"create {topic}", err)

    def set_leader(self, topic: str, partition: int, broker: int) -> None:
        err = self._lib.rd_kafka_mock_partition_set_leader(
            self._cluster, topic.encode(), partition, broker
        )
        self._check(f"leader of {topic}[{partition}]", err)

    def down(self, broker: int) -> None:
        self._check(
            f"broker {broker} down", self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker)
        )

    def up(self, broker: int) -> None:
        self._check(
            f"broker {broker} up", self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker)
        )

    def close(self) -> None:
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._lib.rd_kafka_destroy(self._rk)
            self._cluster = self._rk = None
