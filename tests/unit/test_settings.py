import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from k2.errors import ConfigError
from k2.instruments import load_instruments
from k2.settings import load_settings, with_venues


def test_defaults() -> None:
    s = load_settings()
    assert s.data_dir == Path("data") and s.api.host == "127.0.0.1" and s.api.port == 8000
    assert s.hotstore.bronze_ttl_days == 7 and s.hotstore.silver_ttl_days == 30
    assert s.venue("binance").ws_url is None


def test_toml_then_env_then_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "k2.toml"
    f.write_text(
        'data_dir = "/tmp/x"\n[writer]\nbatch_rows = 5\n[venues.kraken]\nws_url = "ws://a"\n'
    )
    s = load_settings(f)
    assert (
        s.writer.batch_rows == 5
        and s.venue("kraken").ws_url == "ws://a"
        and s.data_dir == Path("/tmp/x")
    )
    monkeypatch.setenv("K2_WRITER__BATCH_ROWS", "7")
    monkeypatch.setenv("K2_VENUES__KRAKEN__WS_URL", "ws://b")
    s = load_settings(f)
    assert s.writer.batch_rows == 7 and s.venue("kraken").ws_url == "ws://b"
    assert load_settings(f, writer={"batch_rows": 9}).writer.batch_rows == 9


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[writer]\nbatch_rowz = 5\n", "writer.batch_rowz"),
        ("dta_dir = 'x'\n", "dta_dir"),
        ("[venues.binanse]\nws_url = 'x'\n", "binanse"),
    ],
)
def test_unknown_keys_in_the_file_are_named(tmp_path: Path, toml: str, key: str) -> None:
    f = tmp_path / "k2.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=key):
        load_settings(f)


@pytest.mark.parametrize(
    ("var", "key"), [("K2_WRITER__BATCH_ROWZ", "batch_rowz"), ("K2_WRITTER", "K2_WRITTER")]
)
def test_unknown_environment_keys_are_named(
    monkeypatch: pytest.MonkeyPatch, var: str, key: str
) -> None:
    monkeypatch.setenv(var, "1")
    with pytest.raises(ConfigError, match=key):
        load_settings()


def test_a_list_setting_from_the_environment_must_be_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K2_API__ALLOWED_HOSTS", "api")  # not '["api"]'
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "\n" not in str(err.value)
    assert str(err.value).startswith("K2_API__ALLOWED_HOSTS: not a valid value for setting api")
    monkeypatch.setenv("K2_API__ALLOWED_HOSTS", '["api"]')
    assert load_settings().api.allowed_hosts == ["api"]


def test_bad_values_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"writer\.batch_rows"):
        load_settings(writer={"batch_rows": 0})
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_settings_are_frozen_and_secrets_masked() -> None:
    s = load_settings(archive={"catalog_uri": "postgresql://k2:hunter2@db/k2"})
    assert "hunter2" not in repr(s)
    with pytest.raises(ValidationError):
        s.data_dir = Path("y")  # type: ignore[misc]


def test_an_s3_warehouse_takes_explicit_keys_from_settings_or_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from k2.archive.lake import s3_properties

    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    (tmp_path / "key").write_text("AKIDEXAMPLE\n")
    s = load_settings(
        archive={
            "warehouse": "s3://lake/k2",
            "s3": {
                "endpoint": "http://minio:9000",
                "access_key_id_file": str(tmp_path / "key"),
                "secret_access_key": "s3cr3t",
            },
        }
    )
    assert "s3cr3t" not in repr(s)
    props = s3_properties(s.archive)
    assert props == {
        "s3.endpoint": "http://minio:9000",
        "s3.region": "us-east-1",
        "s3.access-key-id": "AKIDEXAMPLE",
        "s3.secret-access-key": "s3cr3t",
        "s3.force-virtual-addressing": "false",
    }
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"  # never the metadata address
    monkeypatch.setenv("K2_ARCHIVE__S3__SECRET_ACCESS_KEY", "from-env")
    assert load_settings().archive.s3.key("secret_access_key") == "from-env"


def test_an_s3_warehouse_without_keys_or_with_two_sources_is_one_line() -> None:
    from k2.archive.lake import s3_properties

    with pytest.raises(ConfigError, match=r"archive\.s3\.access_key_id \(K2_ARCHIVE__S3__"):
        s3_properties(load_settings(archive={"warehouse": "s3://lake/k2"}).archive)
    with pytest.raises(ConfigError, match=r"archive\.s3\.secret_access_key_file /nope"):
        s3_properties(
            load_settings(
                archive={
                    "s3": {"access_key_id": "a", "secret_access_key_file": "/nope"},
                }
            ).archive
        )
    given = {"s3.access-key-id": "a", "s3.secret-access-key": "b"}  # the way before [archive.s3]
    props = s3_properties(load_settings(archive={"catalog_properties": given}).archive)
    assert "s3.access-key-id" not in props  # the catalog properties' own win
    with pytest.raises(ConfigError, match=r"set archive\.s3\.access_key_id or"):
        load_settings(archive={"s3": {"access_key_id": "a", "access_key_id_file": "/k"}})


def test_a_bad_cron_is_refused_when_the_settings_load() -> None:
    with pytest.raises(ConfigError, match=r"archive\.offload_cron: .*invalid cron expression '61"):
        load_settings(archive={"offload_cron": "61 * * * *"})


def test_with_venues_overrides_one_venue() -> None:
    s = with_venues(load_settings(), {"coinbase": {"ws_url": "ws://127.0.0.1:1"}})
    assert s.venue("coinbase").ws_url == "ws://127.0.0.1:1" and s.venue("binance").ws_url is None


def test_default_instruments() -> None:
    inst = load_instruments()
    assert len(inst["binance"]) == 12 and len(inst["kraken"]) == 11 and len(inst["coinbase"]) == 11
    assert inst["kraken"][0] == "BTC/USD" and inst["coinbase"][-1] == "ATOM-USD"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[bitstamp]\nsymbols = ['x']\n", "unknown venue 'bitstamp'"),
        ("[binance]\nsymbols = 'BTCUSDT'\n", "list of non-empty strings"),
        ("[binance]\nsymbol = ['BTCUSDT']\n", "exactly one key"),
        ("[binance]\nsymbols = ['A', 'A']\n", "more than once"),
        ("[binance\n", "not valid TOML"),
    ],
)
def test_bad_instruments(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "i.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_instruments(f)


def test_prefect_state_lives_in_the_data_directory_unless_the_environment_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from k2.cli.common import prefect_env

    # A copy of the environment without Prefect's variables: whatever prefect_env sets stays here.
    monkeypatch.setattr(
        os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    )
    prefect_env(tmp_path / "data")
    assert os.environ["PREFECT_HOME"] == str((tmp_path / "data" / "prefect").resolve())
    assert (tmp_path / "data" / "prefect").is_dir()
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    os.environ["PREFECT_HOME"] = str(tmp_path / "elsewhere")
    prefect_env(tmp_path / "data")
    assert os.environ["PREFECT_HOME"] == str(tmp_path / "elsewhere")


def test_simulator_faults_are_checked_when_the_settings_load() -> None:
    with pytest.raises(ConfigError, match=r"simulator\.faults: .*unknown fault 'quake'"):
        load_settings(None, simulator={"faults": "disconnect,quake"})
    assert load_settings(None, simulator={"faults": "all"}).simulator.faults == "all"
