"""The record of days hot-store retention has emptied (ddl/017_hot_expired.sql).

Retention (archive/retention.py) writes a day here before it deletes the day's rows; readers
(query/tiers.py) read it after reading hot, and take what hot may lack of those days from the
archive.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from k2.hotstore.schema import DATABASE
from k2.hotstore.store import HotStore

EXPIRED_TABLE = f"{DATABASE}.hot_expired"
EPOCH = dt.date(1970, 1, 1)


def day_ordinal(partition: str) -> int:
    """A day partition (YYYYMMDD) as days since 1970."""
    return (dt.date(int(partition[:4]), int(partition[4:6]), int(partition[6:])) - EPOCH).days


def record(store: HotStore, table: str, day: int) -> None:
    """Say that retention is about to empty `day` (days since 1970) of hot `table`."""
    data = pa.table({"table": [table], "day": pa.array([day], pa.date32())})
    store.insert_arrow(EXPIRED_TABLE, data, {"async_insert": 0, "insert_deduplicate": 0})


def expired_days(store: HotStore, table: str) -> set[int]:
    """The days (since 1970) retention has emptied, or begun to empty, in hot `table`."""
    return {
        (d - EPOCH).days
        for (d,) in store.rows(
            f"SELECT DISTINCT day FROM {EXPIRED_TABLE} WHERE table = {{t:String}}", {"t": table}
        )
    }
