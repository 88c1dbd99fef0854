"""The one way commands reach a data directory (cli/remote.reach)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from k2.cli import remote
from k2.errors import ConfigError, InputError, StoreLocked
from k2.settings import HotStoreSettings


def test_a_k2_up_that_takes_the_directory_in_between_is_asked_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hot").mkdir()
    urls = iter([None, "http://127.0.0.1:8000"])
    monkeypatch.setattr(remote, "running_api", lambda data_dir: next(urls))

    def locked(*args: Any) -> Any:
        raise StoreLocked("in use by k2 up")

    monkeypatch.setattr(remote, "OwnedStore", locked)
    got = remote.reach(tmp_path, "k2 test", HotStoreSettings(), lambda url: url, lambda o: "local")
    assert got == "http://127.0.0.1:8000"


def test_a_directory_busy_twice_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hot").mkdir()
    monkeypatch.setattr(remote, "running_api", lambda data_dir: None)

    def locked(*args: Any) -> Any:
        raise StoreLocked("in use")

    monkeypatch.setattr(remote, "OwnedStore", locked)
    with pytest.raises(ConfigError, match="is busy"):
        remote.reach(tmp_path, "k2 test", HotStoreSettings(), lambda url: url, lambda o: "local")


def test_reading_never_creates_a_store(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no hot store in"):
        remote.reach(tmp_path, "k2 test", HotStoreSettings(), lambda url: url, lambda o: "local")
    assert list(tmp_path.iterdir()) == []


def test_the_owner_is_closed_clean_only_when_the_command_succeeded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hot").mkdir()
    monkeypatch.setattr(remote, "running_api", lambda data_dir: None)
    closed: list[bool] = []

    class Owner:
        def __init__(self, *args: Any) -> None:
            pass

        def close(self, clean: bool = True) -> None:
            closed.append(clean)

    monkeypatch.setattr(remote, "OwnedStore", Owner)
    assert remote.reach(tmp_path, "t", HotStoreSettings(), str, lambda o: "ok") == "ok"

    def fails(owner: Any) -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        remote.reach(tmp_path, "t", HotStoreSettings(), str, fails)
    assert closed == [True, False]
