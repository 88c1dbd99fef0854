"""The bus's topics and their messages (docs/CLUSTER.md, "Topics").

- `<prefix>.trades.v1`, keyed `<venue>:<symbol>`: what a feed delivered for one symbol, in
  order: batches of trades (each as received, flagged accepted or duplicate, with its raw JSON for
  bronze) and the symbol's gap records (a gap follows the trade that revealed it, and precedes its
  fills). One symbol's messages share a partition, so its order holds end to end.
- `<prefix>.rejects.v1`, keyed `<venue>`: messages that failed validation.
- `<prefix>.status.v1`, one partition, keyed by process: each `k2 feed` and `k2 ingest` process's
  heartbeat, JSON (bus/status.py), read by `k2 health`.

Values are MessagePack (msgspec), a tagged union per topic; prices and amounts are exact decimal
text. A change that old readers cannot read gets a new version suffix, never a reuse.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from k2.records import Gap, GapKind, Outcome, Reject, Source, Trade

VERSION = "v1"


def trades_topic(prefix: str) -> str:
    return f"{prefix}.trades.{VERSION}"


def rejects_topic(prefix: str) -> str:
    return f"{prefix}.rejects.{VERSION}"


def status_topic(prefix: str) -> str:
    return f"{prefix}.status.{VERSION}"


def trade_key(venue: str, symbol: str) -> bytes:
    return f"{venue}:{symbol}".encode()


class WireTrade(msgspec.Struct, array_like=True, frozen=True):
    trade_id: int
    price: Decimal
    amount: Decimal
    taker_side: str
    ts_event: int
    ts_recv: int
    venue_side: str
    raw: bytes
    accepted: bool  # new to the feed (silver); False: a duplicate (bronze only)


class TradeBatch(msgspec.Struct, tag="trades", frozen=True):
    exchange: str
    symbol: str
    canonical_symbol: str
    conn_id: str
    source: Source
    trades: list[WireTrade]
    # the highest id published for the symbol so far, this batch included, and its event time:
    # where a restarted feed resumes (bus/resume.py), whatever order fills and live trades took
    high_id: int
    high_ts: int


class GapRecord(msgspec.Struct, tag="gap", frozen=True):
    """A gap record: `records.Gap`'s fields, in its order."""

    gap_id: str
    exchange: str
    symbol: str
    first_id: int
    last_id: int
    ts_from: int
    ts_to: int
    detected_at: int
    resolved_at: int
    outcome: Outcome
    missing: int
    recovered: int
    kind: GapKind
    detail: str


class RejectRecord(msgspec.Struct, tag="reject", frozen=True):
    """A reject: `records.Reject`'s fields, in its order."""

    exchange: str
    reason: str
    raw: bytes
    ts_recv: int
    conn_id: str


TradesMessage = TradeBatch | GapRecord

_encoder = msgspec.msgpack.Encoder()
_trades_decoder = msgspec.msgpack.Decoder(TradesMessage)
_rejects_decoder = msgspec.msgpack.Decoder(RejectRecord)


def encode_trades(
    venue: str,
    symbol: str,
    trades: list[Trade],
    accepted: list[bool],
    conn_id: str,
    source: Source,
    high: tuple[int, int],
) -> bytes:
    """One symbol's trades of one delivery, as a `trades` message."""
    return _encoder.encode(
        TradeBatch(
            venue,
            symbol,
            trades[0].canonical_symbol,
            conn_id,
            source,
            [
                WireTrade(
                    t.trade_id,
                    t.price,
                    t.amount,
                    t.taker_side,
                    t.ts_event,
                    t.ts_recv,
                    t.venue_side,
                    t.raw,
                    a,
                )
                for t, a in zip(trades, accepted, strict=True)
            ],
            *high,
        )
    )


def encode_gap(gap: Gap) -> bytes:
    return _encoder.encode(GapRecord(*msgspec.structs.astuple(gap)))


def encode_reject(reject: Reject) -> bytes:
    return _encoder.encode(RejectRecord(*msgspec.structs.astuple(reject)))


def decode_trades_message(value: bytes) -> TradesMessage:
    """Raises msgspec.DecodeError (a ValidationError among them) for a value that is not one."""
    message: TradesMessage = _trades_decoder.decode(value)
    return message


def decode_reject(value: bytes) -> RejectRecord:
    return _rejects_decoder.decode(value)


def batch_trades(batch: TradeBatch) -> tuple[list[Trade], list[Trade]]:
    """The batch's trades (received) and the accepted ones among them (the same objects)."""
    received = [
        Trade(
            batch.exchange,
            batch.symbol,
            batch.canonical_symbol,
            w.trade_id,
            w.price,
            w.amount,
            w.taker_side,
            w.ts_event,
            w.ts_recv,
            w.venue_side,
            w.raw,
        )
        for w in batch.trades
    ]
    accepted = [t for t, w in zip(received, batch.trades, strict=True) if w.accepted]
    return received, accepted


def record_gap(record: GapRecord) -> Gap:
    return Gap(*msgspec.structs.astuple(record))


def record_reject(record: RejectRecord) -> Reject:
    return Reject(*msgspec.structs.astuple(record))
