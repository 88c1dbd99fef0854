"""The bus's messages: what a feed publishes decodes to the same records, and nothing else does."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from k2.bus.topics import (
    GapRecord,
    RejectRecord,
    TradeBatch,
    batch_trades,
    decode_reject,
    decode_trades_message,
    encode_gap,
    encode_reject,
    encode_trades,
    record_gap,
    record_reject,
)
from k2.ingest.repair import id_gap
from k2.records import Gap, Reject, Source, Trade


def trade(tid: int) -> Trade:
    return Trade(
        "kraken",
        "XBT/USD",
        "BTC/USD",
        tid,
        Decimal("64000.000000000000000001"),
        Decimal("1E-18"),
        "sell",
        1_767_225_600_123_456_789 + tid,
        1_767_225_600_200_000_000 + tid,
        "s",
        b'{"raw":1}',
    )


def test_a_trades_message_carries_every_field_exactly() -> None:
    trades = [trade(7), trade(8)]
    value = encode_trades(
        "kraken", "XBT/USD", trades, [True, False], "kraken-3", Source.REST, (8, 9)
    )
    message = decode_trades_message(value)
    assert isinstance(message, TradeBatch)
    assert (message.conn_id, message.source, message.high_id, message.high_ts) == (
        "kraken-3",
        Source.REST,
        8,
        9,
    )
    received, accepted = batch_trades(message)
    assert received == trades and accepted == [received[0]] and accepted[0] is received[0]


def test_gaps_and_rejects_keep_their_records_fields_in_order() -> None:
    # the wire structs are built from the records' tuples: same names, same order
    assert GapRecord.__struct_fields__ == Gap.__struct_fields__
    assert RejectRecord.__struct_fields__ == Reject.__struct_fields__
    gap = id_gap("kraken", "XBT/USD", 5, 9, 1, 2)
    decoded = decode_trades_message(encode_gap(gap))
    assert isinstance(decoded, GapRecord) and record_gap(decoded) == gap
    reject = Reject("kraken", "bad price", b"\xff{", 3, "kraken-1")
    assert record_reject(decode_reject(encode_reject(reject))) == reject


@pytest.mark.parametrize("value", [b"", b"not msgpack", msgspec.msgpack.encode({"x": 1})])
def test_a_value_that_is_not_ours_fails_to_decode(value: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_trades_message(value)
