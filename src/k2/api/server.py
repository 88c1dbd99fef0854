"""Serve the API with uvicorn inside the running event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn
from fastapi import FastAPI

from k2.errors import ConfigError
from k2.settings import ApiSettings

log = logging.getLogger(__name__)
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ApiServer:
    def __init__(self, app: FastAPI, settings: ApiSettings) -> None:
        if settings.host not in LOOPBACK and not settings.allow_non_loopback:
            raise ConfigError(f"api.host {settings.host!r} is not loopback; set api.allow_non_loopback = true "
                              "to serve K2's API on another interface")  # fmt: skip
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                access_log=False, lifespan="off")  # fmt: skip
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # k2 owns signals
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

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
