"""A message's ts_recv is when it arrived, not when the feed took it from the queue."""

from __future__ import annotations

import asyncio
import time

from k2.ingest.ws import WsConnection


def test_each_message_keeps_the_time_it_arrived_while_it_waits_in_the_queue() -> None:
    async def run() -> tuple[list[bytes], list[int], int]:
        conn = WsConnection()
        conn._push(b"first")  # what picows's listener does as each message completes
        await asyncio.sleep(0.05)
        conn._push(b"second")
        await asyncio.sleep(0.05)  # both wait, as they would behind a busy writer
        taken = time.time_ns()
        messages, arrived = await conn.recv_many(10)
        return messages, arrived, taken

    messages, arrived, taken = asyncio.run(run())
    assert messages == [b"first", b"second"]
    assert arrived[1] - arrived[0] >= 40_000_000  # each its own time, 50 ms apart
    assert taken - arrived[1] >= 40_000_000  # stamped on arrival, not when taken


def test_a_partial_take_leaves_the_rest_with_their_own_times() -> None:
    async def run() -> list[tuple[list[bytes], list[int]]]:
        conn = WsConnection()
        for i in range(5):
            conn._push(bytes([i]))
        return [await conn.recv_many(3), await conn.recv_many(3)]

    (first, first_at), (rest, rest_at) = asyncio.run(run())
    assert first == [b"\x00", b"\x01", b"\x02"] and rest == [b"\x03", b"\x04"]
    assert (
        len(first_at) == 3
        and len(rest_at) == 2
        and first_at + rest_at == sorted(first_at + rest_at)
    )
