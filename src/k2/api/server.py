"""Serve the API with uvicorn inside the running event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from k2.errors import ConfigError
from k2.settings import ApiSettings

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: k2 owns SIGINT and SIGTERM. uvicorn's own handlers
    would also stop the API at once on the first signal and raise it again when the server ends,
    which k2 takes for a second Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    def __init__(self, app: FastAPI, settings: ApiSettings) -> None:
        if settings.host not in LOOPBACK and not settings.allow_non_loopback:
            raise ConfigError(f"api.host {settings.host!r} is not loopback; set api.allow_non_loopback = true "
                              "to serve K2's API on another interface")  # fmt: skip
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=1)  # fmt: skip
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start serving; return the base URL (with the real port when port 0 was asked for)."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise why it could not start
                raise ConfigError("the API server stopped during start-up (is the port in use?)")
            await asyncio.sleep(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: requests in flight get a second, the whole stop at most `timeout` seconds."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout)
