"""A sink for `k2 watch`: append accepted trades to a JSON-lines file, quarantine rejects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import orjson

from k2.records import Gap, Reject, Source, Trade, trade_json
from k2.timeutil import ns_to_rfc3339


class RecordingSink:
    """Records accepted trades and quarantines rejects, each in its file where one is given (the
    feeds' own stats count everything)."""

    def __init__(self, record: Path | None = None, quarantine: Path | None = None) -> None:
        self._record = self._open(record)
        self._quarantine = self._open(quarantine)

    @staticmethod
    def _open(path: Path | None) -> IO[bytes] | None:
        if path is None:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("ab")

    async def trades(
        self, received: Sequence[Trade], accepted: Sequence[Trade], conn_id: str, source: Source
    ) -> None:
        if self._record is not None and accepted:
            self._record.write(b"".join(orjson.dumps(trade_json(t)) + b"\n" for t in accepted))

    async def gap(self, gap: Gap) -> None:
        """Gaps are not recorded here: `k2 watch` writes those left open at its stop."""

    async def reject(self, reject: Reject) -> None:
        if self._quarantine is not None:
            line = {
                "exchange": reject.exchange,
                "reason": reject.reason,
                "conn_id": reject.conn_id,
                "ts_recv": ns_to_rfc3339(reject.ts_recv),
                "raw": reject.raw.decode("utf-8", "replace"),
            }
            self._quarantine.write(orjson.dumps(line) + b"\n")
            self._quarantine.flush()

    def close(self) -> None:
        for f in (self._record, self._quarantine):
            if f is not None:
                f.close()
