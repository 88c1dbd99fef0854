"""Who may use the API: a bearer token, the Host names it answers to, and same-origin JSON posts.

- With a token set (required off loopback), every route but the docs page and the schema needs
  `Authorization: Bearer <token>`, compared in constant time.
- Requests whose Host header is not a name of this API are refused (Starlette's
  TrustedHostMiddleware), so a foreign page cannot reach it through DNS rebinding.
- Routes that change state take only a JSON POST without a foreign Origin: a browser cannot send
  that from another site without a CORS preflight, which this API never grants.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
