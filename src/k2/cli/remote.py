"""Reach the `k2 up` that holds a data directory, over its API, with the configured credential.

chDB allows one process per data directory, so a command finding the directory locked asks the
process holding it (the lock file names its API URL). The token, when one is set, comes from the
same settings that `k2 up` reads; with TLS the local hop is checked against the configured
certificate itself.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from k2.errors import ConfigError, InputError, K2Error, StoreLocked
from k2.hotstore.owner import HOT_DIR, OwnedStore
from k2.hotstore.store import DataDirLock, check_data_dir
from k2.settings import ApiSettings, HotStoreSettings

T = TypeVar("T")


def running_api(data_dir: Path) -> str | None:
    """The API URL of the `k2 up` holding `data_dir`, or None when no process holds it."""
    lock = DataDirLock(data_dir)
    if not lock.is_held():
        return None
    url = (lock.holder() or {}).get("api_url")
    if not url:
        raise ConfigError(
            f"{data_dir} is held by a k2 process without an API (starting up?); try again"
        )
    return str(url)


def client(url: str, settings: ApiSettings, timeout: float | None = 30.0) -> httpx.Client:
    """An HTTP client for the API at `url`,
    sending the token and trusting the configured certificate."""
    token = settings.bearer_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify: ssl.SSLContext | bool = True
    if settings.tls_cert_file is not None:
        verify = ssl.create_default_context(cafile=str(settings.tls_cert_file))
        verify.check_hostname = False  # the lock names 127.0.0.1; the certificate itself is pinned
        verify.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return httpx.Client(base_url=url, headers=headers, verify=verify, timeout=timeout)


def call(
    url: str,
    settings: ApiSettings,
    method: str,
    path: str,
    timeout: float | None = 30.0,
    ok: tuple[int, ...] = (200,),
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; a refusal becomes the matching K2 error with the API's own message."""
    try:
        with client(url, settings, timeout) as http:
            resp = http.request(method, path, **kwargs)
    except httpx.HTTPError as err:
        raise ConfigError(f"cannot reach the running k2 up at {url}: {err}") from None
    if resp.status_code in ok:
        return resp
    raise_for(resp, url)
    return resp


def raise_for(resp: httpx.Response, url: str) -> None:
    """Raise the K2 error for a refused response: 4xx is the caller's input, 5xx the server's."""
    try:
        detail = resp.json().get("detail", resp.text)
    except ValueError:
        detail = resp.text[:200]
    if isinstance(detail, list):  # FastAPI's validation errors: where and what, one line
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
        )
    if resp.status_code == 401:
        raise ConfigError(
            f"the running k2 up at {url} wants a valid API token (api.token_file or K2_API__TOKEN)"
        )
    if 400 <= resp.status_code < 500:
        raise InputError(str(detail))
    raise K2Error(f"the running k2 up answered {resp.status_code}: {detail}")


def reach(
    data_dir: Path,
    role: str,
    settings: HotStoreSettings,
    remote: Callable[[str], T],
    local: Callable[[OwnedStore], T],
) -> T:
    """The one way a command reaches a data directory: through the `k2 up` holding it
    (`remote(api_url)`), or else by owning it for the command's length (`local(owner)`).

    Owning it means what it means for `k2 up`: the lock, the schema brought up to date, and the
    repair of what a crash left, before anything reads. A `k2 up` that takes the directory in
    between is asked instead. A directory with no store yet is an InputError: reading never
    creates one.
    """
    for _ in range(2):
        url = running_api(data_dir)
        if url is not None:
            return remote(url)
        if not (data_dir / HOT_DIR).is_dir():
            check_data_dir(data_dir)  # a file, or not writable: say that first
            raise InputError(f"no hot store in {data_dir} (run `k2 up` first, or pass --data-dir)")
        try:
            owner = OwnedStore(data_dir, settings, role)
        except StoreLocked:
            continue  # k2 up started in between: ask it instead
        clean = False
        try:
            result = local(owner)
            clean = True
            return result
        finally:
            owner.close(clean)
    raise ConfigError(f"{data_dir} is busy (a k2 process is starting or stopping); try again")
