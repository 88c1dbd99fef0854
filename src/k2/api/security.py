"""Who may use the API: a bearer token, the Host names it answers to, and same-origin JSON posts.

- With a token set (required off loopback), every route but the docs page and the schema needs
  `Authorization: Bearer <token>`, compared in constant time.
- Requests whose Host header is not a name of this API are refused (`HostCheck`
  below), so a foreign page cannot reach it through DNS rebinding.
- Routes that change state take only a JSON POST without a foreign Origin: a browser cannot send
  that from another site without a CORS preflight, which this API never grants.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from k2.settings import LOOPBACK_HOSTS, ApiSettings

_bearer = HTTPBearer(auto_error=False, description="The API token (api.token or api.token_file).")


def allowed_hosts(settings: ApiSettings) -> list[str]:
    """The Host header values (without port) this API answers:
    loopback, api.host, api.allowed_hosts."""
    names = [
        f"[{h}]" if ":" in h else h
        for h in (*LOOPBACK_HOSTS, settings.host, *settings.allowed_hosts)
    ]
    return list(dict.fromkeys(n.lower() for n in names if n not in ("0.0.0.0", "[::]")))


def token_check(token: str | None) -> Any:
    """A dependency that demands `token` as a bearer credential (nothing, if `token` is None)."""
    expected = token.encode() if token is not None else None

    def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if expected is None:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not secrets.compare_digest(given, expected):
            raise HTTPException(
                status_code=401,
                detail="a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return Depends(check)


def same_origin_json(request: Request) -> None:
    """Refuse a state-changing request that a foreign web page could have sent.

    The body must be JSON (a cross-site form cannot send that without a preflight), and an
    Origin header, where a browser sends one, must be this API's own.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HTTPException(
            status_code=415, detail="send a JSON body (Content-Type: application/json)"
        )
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}".lower()
    if origin is not None and origin.lower() != own:
        raise HTTPException(status_code=403, detail=f"cross-origin request from {origin!r} refused")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(status_code=403, detail="cross-site request refused")


class HostCheck:
    """Answer only requests whose Host header is a name of this API (`allowed_hosts`: exact
    names, `*.suffix`, or `*` for any), so a foreign page cannot reach it by DNS rebinding. A
    refusal is a 400 problem details answer like every other error (a stream's, a 1008 close)."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        names = [h.lower() for h in allowed_hosts]
        self.any = "*" in names
        self.exact = {h for h in names if not h.startswith("*")}
        self.suffixes = tuple(h[1:] for h in names if h.startswith("*."))

    def allows(self, host: str) -> bool:
        host = host.strip().lower()
        # the name without its port: "[::1]:8000" -> "[::1]", "k2.example:8000" -> "k2.example"
        name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
        return bool(name) and (name in self.exact or name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host", "")
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        detail = f"Invalid host header {host!r}: not a name of this API (api.allowed_hosts)"
        if scope["type"] == "websocket":
            await WebSocketClose(code=1008, reason=detail[:120])(scope, receive, send)
            return
        from k2.api.problems import problem

        await problem(400, detail)(scope, receive, send)
