"""What the bus's producer and consumers count, for /metrics and `k2 health` (plain numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ProducerStats:
    messages: int = 0  # produced (handed to the client)
    delivered: int = 0  # acknowledged by the broker (acks=all)
    delivery_errors: int = 0  # the broker refused a message, or the client gave it up
    last_delivery_error_at: float = 0.0  # UNIX time of the latest (0: none)
    overflows: int = 0  # times the local buffer was full and a feed had to wait
    last_overflow_at: float = 0.0  # UNIX time of the latest overflow (0: none)
    backpressure_s: float = 0.0  # time feeds spent waiting for room
    buffered: int = 0  # messages in the local buffer, not acknowledged yet
    buffer_limit: int = 0
    brokers_down_since: float = 0.0  # UNIX time; 0 while the broker is reachable
    fatal: str = ""  # the producer cannot go on (this process must restart)


@dataclass
class PartitionLag:
    topic: str
    partition: int
    committed: int  # next offset to read (-1: nothing committed yet)
    high: int  # the partition's end
    lag: int


@dataclass
class ConsumerStats:
    member: str
    batches: int = 0
    messages: int = 0
    undecodable: int = 0  # messages that are not K2's: to rejects, never retried
    last_undecodable_at: float = 0.0  # UNIX time of the latest (0: none)
    redelivered_batches: int = 0  # a batch replayed after a restart or a partition move
    rebalances: int = 0
    assigned: list[tuple[str, int]] = field(default_factory=list)
    lag: list[PartitionLag] = field(default_factory=list)
