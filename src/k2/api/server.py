"""Serve the API with uvicorn inside the running event loop, on a socket bound before anything else.

`k2 up` binds the API's socket first, so that a busy port, an address this machine does not have or
a missing credential ends the start with one line before the store is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from k2.errors import ConfigError, InputError
from k2.settings import ApiSettings

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: k2 owns SIGINT and SIGTERM. uvicorn's own handlers
    would also stop the API at once on the first signal and raise it again when the server ends,
    which k2 takes for a second Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check_exposure(settings: ApiSettings) -> None:
    """Refuse an API that would be open to the network without a credential or a Host list."""
    if settings.loopback:
        return
    if settings.bearer_token() is None:
        raise ConfigError(
            f"api.host {settings.host!r} is not loopback: set api.token_file (or K2_API__TOKEN) so "
            "that clients must send a bearer token; see docs/API.md"
        )
    if settings.host in ("0.0.0.0", "::", "") and not settings.allowed_hosts:
        raise ConfigError(
            f"api.host {settings.host!r} listens on every interface: list the names clients use "
            'in api.allowed_hosts (["*"] for any); see docs/API.md'
        )


def bind(host: str, port: int) -> socket.socket:
    """Bind and listen on (host, port), or raise InputError saying why not in one line."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise InputError(
            f"api.host {host!r} is not a name or address this machine can use: "
            f"{getattr(err, 'strerror', None) or err}"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise InputError(
                f"the API cannot listen on {where}: the port is already in use (another "
                "k2 up? choose another with --port or api.port)"
            ) from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise InputError(
                f"the API cannot listen on {where}: no interface of this machine has "
                f"the address {host!r} (api.host)"
            ) from None
        if err.errno == errno.EACCES:
            raise InputError(
                f"the API cannot listen on {where}: permission denied (ports below "
                "1024 need privileges)"
            ) from None
        raise InputError(f"the API cannot listen on {where}: {err.strerror or err}") from None
    return sock


class ApiServer:
    """The API on its own socket: `ApiServer(settings)` binds,
    `start(app)` serves, `stop()` ends."""

    def __init__(self, settings: ApiSettings) -> None:
        check_exposure(settings)
        self.settings = settings
        if settings.tls_cert_file is not None:
            self._check_tls(settings)
        self._socket = bind(settings.host, settings.port)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def _check_tls(settings: ApiSettings) -> None:
        assert settings.tls_cert_file is not None and settings.tls_key_file is not None
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                settings.tls_cert_file, settings.tls_key_file
            )
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"api.tls_cert_file/api.tls_key_file cannot be used: "
                f"{getattr(err, 'strerror', None) or err}"
            ) from None

    @property
    def url(self) -> str:
        """The base URL (with the real port when port 0 was asked for)."""
        host, port = self._socket.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        host = f"[{host}]" if ":" in host else host
        return f"{self.settings.scheme}://{host}:{port}"

    async def start(self, app: FastAPI) -> str:
        """Start serving `app` on the bound socket; return the base URL."""
        s = self.settings
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            ssl_certfile=s.tls_cert_file,
            ssl_keyfile=s.tls_key_file,
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # re-raise why it could not start
                raise ConfigError("the API server stopped during start-up")
            await asyncio.sleep(0.02)
        return self.url

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - public signature; callers pass their budget
        """Stop serving: requests in flight get a second,
        the whole stop at most `timeout` seconds."""
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout)
        self._socket.close()
