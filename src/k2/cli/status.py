"""The live status table `k2 watch` and `k2 up` show (a log line instead when not on a terminal)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from k2.ingest.feed import Feed

log = logging.getLogger("k2.status")
ExtraRows = Callable[[], list[tuple[str, str]]]


def _age(ns: int, now_ns: int) -> str:
    if not ns:
        return "-"
    seconds = (now_ns - ns) / 1e9
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


class StatusView:
    """Keeps per-symbol rates between refreshes and renders feeds (and extra lines) as a table."""

    def __init__(self, feeds: Sequence[Feed], extra: ExtraRows | None = None) -> None:
        self.feeds, self.extra = feeds, extra
        start = time.monotonic()
        self._last: dict[tuple[str, str], tuple[float, int]] = {
            (f.name, "log"): (start, 0) for f in feeds
        }

    def _rate(self, key: tuple[str, str], count: int, now: float) -> float:
        then, before = self._last.get(key, (now, count))
        self._last[key] = (now, count)
        return (count - before) / (now - then) if now > then else 0.0

    def table(self) -> Group:
        now, now_ns = time.monotonic(), time.time_ns()
        t = Table(title="K2 feeds", expand=False)
        for col in (
            "venue",
            "symbol",
            "state",
            "trades/s",
            "trades",
            "last trade",
            "dups",
            "gaps (repaired)",
        ):
            t.add_column(
                col, justify="right" if col not in ("venue", "symbol", "state") else "left"
            )
        for feed in self.feeds:
            s = feed.stats
            # venue text: never markup
            state = Text(s.state + (f" ({s.state_detail})" if s.state_detail else ""))
            t.add_row(
                Text(feed.name, style="bold"),
                "",
                state,
                f"{self._rate((feed.name, ''), s.trades, now):.1f}",
                str(s.trades),
                "",
                str(s.duplicates),
                f"{s.gaps_found} ({s.gaps_repaired})",
                end_section=False,
            )
            for symbol, ss in s.symbols.items():
                listing = "" if ss.listing in ("listed", "unchecked") else ss.listing
                t.add_row(
                    "",
                    Text(symbol),
                    Text(listing),
                    f"{self._rate((feed.name, symbol), ss.trades, now):.1f}",
                    str(ss.trades),
                    _age(ss.last_trade_recv_ns, now_ns),
                    str(ss.duplicates),
                    str(ss.gaps),
                )
            t.add_section()
        parts: list[Table] = [t]
        if self.extra is not None:
            rows = self.extra()
            if rows:
                e = Table(title="K2 store", expand=False)
                e.add_column("what")
                e.add_column("value", justify="right")
                for name, value in rows:
                    e.add_row(Text(name), Text(value))
                parts.append(e)
        return Group(*parts)

    def summary(self, final: bool = False) -> str:
        """One line per venue (and store line); `final` leaves out rates, which need an interval."""
        now = time.monotonic()
        parts = []
        for feed in self.feeds:
            s = feed.stats
            rate = "" if final else f" ({self._rate((feed.name, 'log'), s.trades, now):.1f}/s)"
            parts.append(
                f"{feed.name} {s.state}: {s.trades} trades{rate}, dups {s.duplicates}, "
                f"gaps {s.gaps_found}/{s.gaps_repaired} repaired, rejects {s.rejects}"
            )
        if self.extra is not None:
            parts.extend(f"{name} {value}" for name, value in self.extra())
        return "; ".join(parts)


async def show_status(view: StatusView, stop: asyncio.Event, live: bool | None = None) -> None:
    """Refresh the table twice a second on a terminal,
    else log a summary every 10 s, until `stop`."""
    live = sys.stdout.isatty() if live is None else live
    if live:
        console = Console()
        with Live(view.table(), console=console, refresh_per_second=2, transient=False) as screen:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                screen.update(view.table())
    else:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10)
            log.info("%s", view.summary())
