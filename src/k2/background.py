"""Blocking work that must never hold up a stop: run it in a daemon thread, await it as a future.

`asyncio.to_thread` uses the loop's default executor, and `asyncio.run` joins that executor's
threads before it returns: one flow run or store call that is still going would keep the process
alive past its grace period. A daemon thread is simply left behind; the caller decides (within its
grace period) whether to wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def in_daemon_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Start `fn()` in a new daemon thread; return a future of its result on the running loop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not future.done():
            future.set_result(value) if ok else future.set_exception(value)

    def target() -> None:
        try:
            result: Any = fn()
            ok = True
        except BaseException as err:  # noqa: BLE001 - handed to the awaiting side, which decides
            result, ok = err, False
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
            loop.call_soon_threadsafe(settle, ok, result)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
