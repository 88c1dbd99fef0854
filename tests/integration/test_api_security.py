"""The HTTP API lets in only whom it should: token, Host names, same-origin JSON posts, TLS, docs
offline.

Every test goes through the real FastAPI app (`create_app`) over a real chDB store, or through the
real uvicorn server on loopback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from k2.api.app import create_app
from k2.api.server import ApiServer
from k2.cli.remote import client as api_client
from k2.embedded import Embedded
from k2.errors import ConfigError, InputError
from k2.instruments import load_instruments
from k2.settings import ApiSettings, load_settings
from k2.timeutil import ns_to_rfc3339
from tests.hot_support import write_btc_trades

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-for-tests-0123456789"
T0 = (time.time_ns() // 10**9 - 86_400) * 10**9  # a day ago, to the second (within the hot TTL)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Embedded]:
    """A stopped `k2 up`'s parts: its store (a few Binance trades) and everything the API reads."""
    data = tmp_path_factory.mktemp("api")
    emb = Embedded(load_settings(None, data_dir=data), load_instruments())
    emb.open_store()
    assert emb.store is not None

    write_btc_trades(emb.store, T0)
    emb.writer = None
    yield emb
    assert emb._owner is not None
    emb._owner.close()


def with_api(platform: Embedded, **api: Any) -> Embedded:
    """The same platform, with other API settings."""
    settings = platform.settings.model_copy(update={"api": ApiSettings(**api)})
    return dataclasses.replace(platform, settings=settings)


def http(ctx: Embedded, host: str = "127.0.0.1:8000", scheme: str = "http") -> TestClient:
    return TestClient(create_app(ctx), base_url=f"{scheme}://{host}")


# -- credentials ----------------------------------------------------------------------------------


def test_loopback_without_a_token_is_open_as_before(platform: Embedded) -> None:
    resp = http(platform).get("/api/trades", params={"venue": "binance"})
    assert resp.status_code == 200
    assert [r["trade_id"] for r in resp.json()["rows"]] == [1, 2, 3]


def test_with_a_token_every_route_but_the_docs_needs_it(platform: Embedded) -> None:
    api = http(with_api(platform, token=TOKEN))
    for path in (
        "/api/trades",
        "/api/candles",
        "/api/gaps",
        "/api/rejects",
        "/api/symbols",
        "/health",
        "/metrics",
    ):
        resp = api.get(path)
        assert resp.status_code == 401, path
        assert resp.headers["www-authenticate"] == "Bearer"
        assert (
            api.get(path, headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code
            == 401
        )
        # not a bearer credential
        assert api.get(path, headers={"Authorization": TOKEN}).status_code == 401
        assert api.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code in (
            200,
            503,
        ), path
    assert api.get("/docs").status_code == 200
    assert api.get("/openapi.json").status_code == 200


def test_the_token_can_come_from_a_file(platform: Embedded, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    ctx = with_api(platform, token_file=tmp_path / "token")
    api = http(ctx)
    assert api.get("/api/symbols").status_code == 401
    assert api.get("/api/symbols", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_token_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings(None, api={"token": "short"})
    with pytest.raises(ConfigError, match="not both"):
        load_settings(None, api={"token": TOKEN, "token_file": "/etc/hostname"})
    with pytest.raises(ConfigError, match=r"both api\.tls_cert_file and api\.tls_key_file"):
        load_settings(None, api={"tls_cert_file": "/x.pem"})
    with pytest.raises(ConfigError, match="token_file /nonexistent/token: No such file"):
        ApiSettings(token_file=Path("/nonexistent/token")).bearer_token()


def test_a_non_loopback_bind_needs_a_token_and_names() -> None:
    with pytest.raises(ConfigError, match=r"is not loopback: set api\.token_file"):
        ApiServer(ApiSettings(host="0.0.0.0", port=0))
    with pytest.raises(ConfigError, match=r"list the names clients use in api\.allowed_hosts"):
        ApiServer(ApiSettings(host="0.0.0.0", port=0, token=TOKEN))
    server = ApiServer(
        ApiSettings(host="0.0.0.0", port=0, token=TOKEN, allowed_hosts=["k2.example"])
    )
    asyncio.run(server.stop())


# -- DNS rebinding --------------------------------------------------------------------------------


def test_a_foreign_host_header_is_refused(platform: Embedded) -> None:
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
        resp = http(platform, host=host).get("/api/trades")
        assert resp.status_code == 400, host
        assert "Invalid host header" in resp.text
    for host in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert http(platform, host=host).get("/api/trades").status_code == 200, host
    named = with_api(platform, host="0.0.0.0", token=TOKEN, allowed_hosts=["k2.example"])
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http(named, host="k2.example:8000").get("/api/trades", headers=auth).status_code == 200
    assert http(named, host="other.example").get("/api/trades", headers=auth).status_code == 400


# -- cross-site requests --------------------------------------------------------------------------


@pytest.fixture
def flow_calls(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace the flows with a recorder: these tests are about who may start one."""
    import k2.flows

    calls: list[Any] = []
    monkeypatch.setitem(
        k2.flows.FLOWS, "offload", lambda tables=None, **_: calls.append(tables) or {"ran": True}
    )
    return calls


def test_a_cross_site_form_post_does_not_run_a_flow(
    platform: Embedded, flow_calls: list[Any]
) -> None:
    api = http(platform)
    form = api.post(
        "/api/flows/offload",
        data={"table": "silver_trades"},
        headers={"Origin": "http://evil.example"},
    )
    assert form.status_code == 415
    plain = api.post("/api/flows/offload", content=b"{}", headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    foreign = api.post("/api/flows/offload", json={}, headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    assert "cross-origin" in foreign.json()["detail"]
    site = api.post("/api/flows/offload", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert site.status_code == 403
    assert api.get("/api/flows/offload").status_code == 405
    assert flow_calls == []
    ok = api.post(
        "/api/flows/offload",
        json={"tables": ["silver_trades"]},
        headers={"Origin": "http://127.0.0.1:8000"},
    )
    assert ok.status_code == 200, ok.text
    assert api.post("/api/flows/offload", json={}).status_code == 200  # a CLI sends no Origin
    assert flow_calls == [["silver_trades"], None]


# -- the same mistakes as the CLI's, as 4xx with a message -----------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"venue": "binanse"}, "unknown venue 'binanse'; did you mean binance?"),
        ({"symbol": "BTC/USDX"}, "unknown symbol 'BTC/USDX'; did you mean"),
        ({"from": "2300-01-01"}, "outside the times K2 can store"),
        ({"to": "99999999999999999999d"}, "outside the times K2 can store"),
        ({"from": "yesterday"}, "is not a time"),
    ],
)
def test_bad_filters_are_400_with_the_reason(
    platform: Embedded, params: dict[str, str], message: str
) -> None:
    resp = http(platform).get("/api/trades", params=params)
    assert resp.status_code == 400
    assert message in resp.json()["detail"]


def test_filters_take_any_case_and_the_venues_spelling(platform: Embedded) -> None:
    api = http(platform)
    for params in (
        {"venue": "BINANCE"},
        {"symbol": "btc/usdt"},
        {"symbol": "BTCUSDT", "venue": "Binance"},
    ):
        assert len(api.get("/api/trades", params=params).json()["rows"]) == 3, params
    assert api.get("/api/trades", params={"limit": 0}).status_code == 422
    assert api.get("/api/candles", params={"timeframe": "2m"}).status_code == 400


def test_symbols_lists_every_instrument_with_its_trades(platform: Embedded) -> None:
    rows = http(platform).get("/api/symbols").json()["rows"]
    assert len(rows) == sum(len(s) for s in load_instruments().values())
    btc = next(r for r in rows if r["exchange"] == "binance" and r["symbol"] == "BTCUSDT")
    assert btc == {
        "exchange": "binance",
        "symbol": "BTCUSDT",
        "canonical_symbol": "BTC/USDT",
        "trades": 3,
        "first_trade": ns_to_rfc3339(T0 + 10**9),
        "last_trade": ns_to_rfc3339(T0 + 3 * 10**9),
    }
    eth = next(r for r in rows if r["exchange"] == "kraken" and r["symbol"] == "ETH/USD")
    assert (eth["trades"], eth["first_trade"], eth["last_trade"]) == (0, "", "")


# -- docs offline ---------------------------------------------------------------------------------


def test_the_docs_page_loads_its_assets_locally(platform: Embedded) -> None:
    api = http(platform)
    page = api.get("/docs").text
    assert "https://" not in page and "http://" not in page  # nothing from a CDN
    for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
        assert asset in page
        resp = api.get(asset)
        assert resp.status_code == 200 and len(resp.content) > 10_000, asset


# -- the real server: bind first, TLS -------------------------------------------------------------


def test_a_busy_port_or_a_bad_host_is_one_line_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            InputError, match=f"cannot listen on 127.0.0.1:{port}: the port is already in use"
        ):
            ApiServer(ApiSettings(port=port))
    with pytest.raises(InputError, match="is not a name or address this machine can use"):
        ApiServer(
            ApiSettings(host="no-such-host.invalid", port=0, token=TOKEN, allowed_hosts=["x"])
        )
    with pytest.raises(
        InputError, match=r"no interface of this machine has the address '192\.0\.2\.1'"
    ):
        ApiServer(ApiSettings(host="192.0.2.1", port=0, token=TOKEN))


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k2.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("k2.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_tls_serves_https_with_the_configured_certificate(
    platform: Embedded, tmp_path: Path
) -> None:
    cert, key = self_signed(tmp_path)
    settings = ApiSettings(port=0, token=TOKEN, tls_cert_file=cert, tls_key_file=key)
    ctx = with_api(platform, **settings.model_dump())

    async def run() -> None:
        server = ApiServer(settings)
        url = await server.start(create_app(ctx))
        try:
            assert url.startswith("https://127.0.0.1:")

            def requests() -> None:
                # the CLI's client: token sent, certificate pinned
                with api_client(url, settings) as secure:
                    assert secure.get("/api/trades").json()["rows"][0]["trade_id"] == 1
                with pytest.raises(httpx.ConnectError):  # an unknown certificate is not trusted
                    httpx.get(f"{url}/api/trades", timeout=5)
                with pytest.raises(httpx.HTTPError):  # and plain HTTP gets no answer
                    httpx.get(url.replace("https://", "http://") + "/api/trades", timeout=5)

            await asyncio.to_thread(requests)
        finally:
            await server.stop()

    asyncio.run(run())
    with pytest.raises(ConfigError, match="cannot be used"):
        ApiServer(ApiSettings(port=0, tls_cert_file=key, tls_key_file=key))
