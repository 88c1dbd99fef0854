"""Every user mistake is one line on stderr and a non-zero exit, through the real `k2` entry point,
and none of them damages the data directory."""

from __future__ import annotations

import contextlib
import random
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from k2.hotstore import recovery
from k2.hotstore.owner import HOT_DIR, OwnedStore
from k2.settings import HotStoreSettings
from tests.hot_support import write_btc_trades
from tests.integration.test_up import env_without_k2

pytestmark = pytest.mark.integration

K2 = [sys.executable, "-m", "k2"]
T0 = (time.time_ns() // 10**9 - 3600) * 10**9  # an hour ago, to the second


def k2(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environ = env_without_k2() | (env or {})
    return subprocess.run(
        [*K2, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The single error line a mistake must produce (and no traceback)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("k2: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped data directory holding three Binance trades."""
    root = tmp_path_factory.mktemp("mistakes")
    owner = OwnedStore(root / "data", HotStoreSettings(), "test")

    write_btc_trades(owner.store, T0)
    owner.close()
    return root


# -- config files and data directories -------------------------------------------------------------


def test_a_malformed_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "k2.toml").write_text('data_dir = "unterminated\n')
    line = one_line(k2("health", cwd=tmp_path))
    assert "config file k2.toml is not valid TOML" in line and "line 1" in line
    (tmp_path / "k2.toml").write_bytes(b"data_dir = '\xff'\n")
    assert "config file k2.toml is not UTF-8 text" in one_line(k2("trades", cwd=tmp_path))
    (tmp_path / "k2.toml").unlink()
    (tmp_path / "k2.toml").mkdir()
    assert "config file k2.toml is not a file" in one_line(
        k2("trades", "--config", "k2.toml", cwd=tmp_path)
    )


def test_a_data_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    for command in (["up", "--simulate", "--duration", "5"], ["trades"], ["health"], ["offload"]):
        line = one_line(k2(*command, "--data-dir", "data", cwd=tmp_path))
        assert "data directory data is not a directory" in line, (command, line)
    assert (tmp_path / "data").read_text() == "not a directory"


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` mounted read-only at a new place (a bind mount: needs root, skipped otherwise)."""
    target = path.parent / (path.name + "-ro")
    target.mkdir()
    mounted = subprocess.run(
        ["mount", "--bind", str(path), str(target)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_read_only_data_directory_is_one_line_and_untouched(data: Path) -> None:
    before = sorted(p.name for p in (data / "data").iterdir())
    with read_only(data / "data") as ro:
        for command in (["trades"], ["health"], ["symbols"], ["gaps"], ["offload"]):
            line = one_line(k2(*command, "--data-dir", str(ro), cwd=data))
            assert "is read-only: K2 must write in its data directory even to read it" in line, (
                command,
                line,
            )
        line = one_line(k2("up", "--simulate", "--duration", "3", "--data-dir", str(ro), cwd=data))
        assert "is read-only" in line
    assert sorted(p.name for p in (data / "data").iterdir()) == before


# -- the simulator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "-1"], "--rate must be greater than 0, got -1"),
        (["--tick-ms", "0"], "--tick-ms must be greater than 0, got 0"),
        (["--duration", "0"], "--duration must be greater than 0"),
        (["--port", "70000"], "Invalid value for '--port'"),
        (["--port", "x"], "Invalid value for '--port'"),
        (["--faults", "earthquake"], "earthquake"),
    ],
)
def test_bad_simulator_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    assert message in one_line(k2("simulate", *args, cwd=tmp_path))


def _busy_after_a_free_port(busy: socket.socket) -> int:
    """Bind `busy` to a port whose predecessor is free, below the ephemeral range (an ephemeral
    neighbour was often taken by some other connection meanwhile, and the simulator then named
    that port instead); return the busy port."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 30_000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port - 1))  # free now; released for the simulator
                busy.bind(("127.0.0.1", port))
            except OSError:
                continue
        busy.listen()
        return port
    raise AssertionError("no free pair of ports between 20000 and 30000")


def test_the_simulator_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        port = _busy_after_a_free_port(busy)
        line = one_line(k2("simulate", "--port", str(port - 1), "--duration", "5", cwd=tmp_path))
    assert f"cannot serve kraken on 127.0.0.1:{port}: the port is already in use" in line


# -- k2 up: bind first, then open the store --------------------------------------------------------


def test_k2_up_on_a_busy_port_is_one_line_and_leaves_the_store_untouched(data: Path) -> None:
    clean = data / "data" / HOT_DIR / recovery.MARKER  # (was_clean() would consume it)
    assert clean.exists()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        line = one_line(k2("up", "--simulate", "--port", str(port), "--data-dir", "data", cwd=data))
        assert time.monotonic() - started < 15
        assert f"the API cannot listen on 127.0.0.1:{port}: the port is already in use" in line
        fresh = one_line(
            k2("up", "--simulate", "--port", str(port), "--data-dir", "fresh", cwd=data)
        )
        assert "already in use" in fresh
    assert clean.exists()  # the store was never opened: no crash recovery at the next start
    assert not (data / "fresh" / HOT_DIR).exists()


def test_k2_up_with_a_bad_host_or_an_open_bind_is_one_line(tmp_path: Path) -> None:
    line = one_line(
        k2("up", "--simulate", cwd=tmp_path, env={"K2_API__HOST": "no-such-host.invalid"})
    )
    assert "api.host 'no-such-host.invalid' is not loopback: set api.token_file" in line
    line = one_line(
        k2(
            "up",
            "--simulate",
            cwd=tmp_path,
            env={"K2_API__HOST": "no-such-host.invalid", "K2_API__TOKEN": "x" * 20},
        )
    )
    assert "is not a name or address this machine can use" in line
    line = one_line(k2("up", "--simulate", cwd=tmp_path, env={"K2_API__HOST": "0.0.0.0"}))
    assert "set api.token_file (or K2_API__TOKEN)" in line
    assert not (tmp_path / "data" / HOT_DIR).exists()


# -- times, venues, symbols ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--from", "1600-01-01"],
            "--from: '1600-01-01' is outside the times K2 can store (1677-09-21 to 2262-04-11)",
        ),
        (["--to", "2300-01-01"], "--to: '2300-01-01' is outside the times K2 can store"),
        (
            ["--from", "99999999999999999999d"],
            "--from: '99999999999999999999d' is outside the times K2 can store",
        ),
        (["--from", "2026-02-30"], "is not a time"),
        (["--from", "soon"], "is not a time"),
        (["--venue", "binanse"], "unknown venue 'binanse'; did you mean binance?"),
        (["--venue", "ftx"], "unknown venue 'ftx' (known: binance, coinbase, kraken)"),
        (["--symbol", "BTC/USDX"], "unknown symbol 'BTC/USDX'; did you mean BTC/USD"),
        (["--venue", "kraken", "--symbol", "BTCUSDT"], "unknown symbol 'BTCUSDT' on kraken"),
        (["--limit", "0"], "limit must be between 1 and 1,000,000 (use k2 export for more)"),
        (["--limit", "many"], "Invalid value for '--limit'"),
    ],
)
def test_bad_query_filters_are_one_line(data: Path, args: list[str], message: str) -> None:
    assert message in one_line(k2("trades", "--data-dir", "data", *args, cwd=data))


def test_query_filters_take_any_case_and_the_venues_spelling_and_times_do_not_wrap(
    data: Path,
) -> None:
    def ids(*args: str) -> list[int]:
        result = k2("trades", "--data-dir", "data", "--format", "jsonl", *args, cwd=data)
        assert result.returncode == 0, result.stderr
        return [orjson.loads(line)["trade_id"] for line in result.stdout.splitlines()]

    assert ids("--venue", "BINANCE") == [1, 2, 3]
    assert ids("--symbol", "btcusdt") == [1, 2, 3]
    assert ids("--venue", "Binance", "--symbol", "btc/usdt") == [1, 2, 3]
    # a future start: nothing yet (it used to wrap to the latest rows)
    assert ids("--from", "2200-01-01") == []
    assert ids("--to", "2262-04-11") == [
        1,
        2,
        3,
    ]  # a far end: everything (it used to wrap to nothing)
    assert ids("--from", "1700-01-01", "--to", "2d") == []
    assert ids("--from", "1d") == [1, 2, 3]


def test_k2_symbols_lists_every_instrument(data: Path) -> None:
    result = k2("symbols", "--data-dir", "data", "--format", "jsonl", cwd=data)
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 34
    btc = next(r for r in rows if r["symbol"] == "BTCUSDT")
    assert (btc["exchange"], btc["canonical_symbol"], btc["trades"]) == ("binance", "BTC/USDT", 3)
    assert btc["first_trade"].endswith("Z") and btc["first_trade"] < btc["last_trade"]
    table = k2("symbols", "--data-dir", "data", cwd=data, env={"COLUMNS": "80"})
    assert "BTC/USDT" in table.stdout and "instruments (34)" in table.stdout


# -- the command line itself -----------------------------------------------------------------------


def test_help_config_anywhere_log_level_and_completion(tmp_path: Path, data: Path) -> None:
    short = k2("trades", "-h", cwd=tmp_path)
    assert short.returncode == 0 and "Usage: k2 trades" in short.stdout
    for command in ("up", "offload", "trades", "simulate"):
        text = k2(command, "--help", cwd=tmp_path, env={"COLUMNS": "80"}).stdout
        assert "<bool>" not in text and "list[str]" not in text, command
        assert max(len(line) for line in text.splitlines()) <= 80, command
    assert "--port" in k2("up", "-h", cwd=tmp_path).stdout
    config = tmp_path / "elsewhere.toml"
    config.write_text(f'data_dir = "{data / "data"}"\n')
    after = k2("trades", "--format", "jsonl", "--config", str(config), cwd=tmp_path)
    assert after.returncode == 0 and len(after.stdout.splitlines()) == 3, after.stderr
    assert (
        k2("trades", f"--config={config}", "--format", "jsonl", cwd=tmp_path).stdout == after.stdout
    )
    assert "config file not found: nothere.toml" in one_line(
        k2("health", "--config", "nothere.toml", cwd=tmp_path)
    )
    line = one_line(k2("trades", cwd=tmp_path, env={"K2_LOG_LEVEL": "verbose"}))
    assert "unknown log level 'verbose'; choose from DEBUG, INFO, WARNING, ERROR, CRITICAL" in line
    assert "No such option: --bogus" in one_line(k2("trades", "--bogus", cwd=tmp_path))
    # Typer takes the shell from the process tree (--show-completion takes no shell name): run it
    # under a bash that stays its parent (`; true` keeps bash from exec-ing it).
    completion = subprocess.run(
        ["bash", "-c", f"{shlex.join([*K2, '--show-completion'])}; true"],
        cwd=tmp_path,
        env=env_without_k2(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (
        completion.returncode == 0
        and "complete" in completion.stdout
        and "_K2_COMPLETE" in completion.stdout
    )


def test_the_example_config_file_is_valid_and_complete(tmp_path: Path) -> None:
    from k2.settings import Settings, load_settings

    example = Path(__file__).parents[2] / "k2.example.toml"
    settings = load_settings(example)
    assert settings.data_dir == Path("data")
    text = example.read_text()
    for section in Settings.model_fields:
        if section != "venues":
            assert section in text, f"k2.example.toml does not mention {section}"
    assert settings == Settings(), "k2.example.toml must show the defaults"
