"""docs/ADD_AN_EXCHANGE.md stays true: a fourth venue built from its checklist alone is picked up.

The walk copies `src/k2` and `tests/` to a temporary directory, applies the guide's checklist
there for Toyex (tests/fixtures/toyex: an adapter, a simulator, samples, unit tests), proves the
steps touched only the files the guide names, and runs the venue's contract and unit tests and
the generic-code checks (tests/fixtures/toyex/walk_checks.py) against that copy in a subprocess.
The real registries never see Toyex.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # about 10 s

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "ADD_AN_EXCHANGE.md"
TOYEX = ROOT / "tests" / "fixtures" / "toyex"
SAMPLES = "tests/fixtures/exchange-samples"
# The files the checklist writes: repository path -> source in tests/fixtures/toyex.
NEW = {
    "src/k2/exchanges/toyex.py": "exchanges_toyex.py",
    "src/k2/simulator/toyex.py": "simulator_toyex.py",
    "tests/unit/test_toyex.py": "unit_toyex.py",
} | {f"{SAMPLES}/{p.name}": f"samples/{p.name}" for p in (TOYEX / "samples").glob("toyex-*.json")}
# The files it edits, and the lines each may add (nothing else may change).
EDITED = {
    "src/k2/exchanges/__init__.py": 2,  # the import and the `_REGISTRY` entry
    "src/k2/simulator/simulator.py": 2,  # the import and the `SERVERS` entry
    "src/k2/instruments.toml": 3,  # a blank line, `[toyex]`, `symbols = [...]`
    "tests/unit/test_adapter_contract.py": 1,  # `VALID`
    "tests/support.py": 1,  # `SMALL`
}
VALID = ["toyex-trades.json", "toyex-heartbeat.json", "toyex-subscribed.json", "toyex-error.json"]
SYMBOLS = ("BTC_USD", "ETH_USD")
MIGRATE = (
    "import sys; from pathlib import Path; from k2.hotstore import migrate; "
    "from k2.hotstore.clickhouse import ClickHouseStore; from k2.settings import HotStoreSettings; "
    "s = ClickHouseStore.at(Path(sys.argv[1])); migrate.apply(s, HotStoreSettings()); s.close()"
)


def checklist() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    return text[text.index("## Checklist") : text.index("### What needs no change")]


def add_entry(path: Path, registry: str, entry: str) -> None:
    """Add `entry` as the last item of the module-level dict literal `registry` in `path`."""
    assert f"`{registry}`" in checklist(), f"the guide's checklist does not name {registry}"
    text = path.read_text(encoding="utf-8")
    found = re.search(rf"^{registry}\b[^=\n]*=\s*\{{\n(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    assert found, f"{path}: no `{registry} = {{...}}`: the guide's step no longer fits the code"
    path.write_text(text[: found.end(1)] + f"    {entry},\n" + text[found.end(1) :])


def add_import(path: Path, line: str) -> None:
    """Add an import line among the module's one-line `from k2... import` lines, in order."""
    text = path.read_text(encoding="utf-8")
    imports = list(re.finditer(r"^from k2\.\S+ import [^(\n]+\n", text, re.MULTILINE))
    assert imports, f"{path}: no k2 imports"
    after = [m for m in imports if m.group() < line] or imports[:1]
    at = after[-1].end() if after[-1].group() < line else after[-1].start()
    path.write_text(text[:at] + line + "\n" + text[at:])


def follow_the_checklist(repo: Path) -> None:
    """Apply the guide's checklist for Toyex to the copy at `repo`, step by step."""
    steps = checklist()
    for target, source in NEW.items():  # steps 1, 2 and 5: the venue's own files
        generic = target.replace("toyex", "<venue>")
        if "-" in Path(target).name:
            generic = f"{SAMPLES}/<venue>-<message>.json"
        assert f"`{generic}`" in steps, f"the guide's checklist does not name {generic}"
        (repo / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TOYEX / source, repo / target)
    # Step 3: register the adapter.
    add_import(repo / "src/k2/exchanges/__init__.py", "from k2.exchanges.toyex import ToyexAdapter")
    add_entry(repo / "src/k2/exchanges/__init__.py", "_REGISTRY", "ToyexAdapter.name: ToyexAdapter")
    # Step 4: its instruments.
    with (repo / "src/k2/instruments.toml").open("a", encoding="utf-8") as f:
        f.write(f"\n[toyex]\nsymbols = {json.dumps(SYMBOLS)}\n")
    # Step 5: register the simulator.
    add_import(repo / "src/k2/simulator/simulator.py", "from k2.simulator import toyex")
    add_entry(repo / "src/k2/simulator/simulator.py", "SERVERS", '"toyex": toyex.ToyexSim')
    # Step 6: the shared tests.
    contract, support = repo / "tests/unit/test_adapter_contract.py", repo / "tests/support.py"
    add_entry(contract, "VALID", f'"toyex": {json.dumps(VALID)}')
    add_entry(support, "SMALL", f'"toyex": ({json.dumps(SYMBOLS)[1:-1]})')
    for edited in EDITED:
        assert f"`{edited}`" in steps, f"the guide's checklist does not name {edited}"


def files(repo: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(repo)): p.read_bytes()
        for top in ("src/k2", "tests")
        for p in (repo / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def copy_repo(to: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache")
    shutil.copytree(ROOT / "src" / "k2", to / "src" / "k2", ignore=skip)
    shutil.copytree(ROOT / "tests", to / "tests", ignore=skip)
    shutil.copyfile(ROOT / "pyproject.toml", to / "pyproject.toml")  # the pytest settings


def run(repo: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("K2_")}
    environ |= {"PYTHONPATH": f"{repo / 'src'}{os.pathsep}{repo}", **env}
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=repo,
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_a_venue_added_by_the_guide_alone_is_picked_up(tmp_path: Path) -> None:
    before, walk = tmp_path / "before", tmp_path / "walk"
    copy_repo(before)
    shutil.copytree(before, walk)
    follow_the_checklist(walk)

    old, new = files(before), files(walk)
    changed = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
    assert changed == set(NEW) | set(EDITED)
    for path, most in EDITED.items():
        diff = list(difflib.ndiff(old[path].decode().splitlines(), new[path].decode().splitlines()))
        added = [line for line in diff if line.startswith("+ ")]
        assert not [line for line in diff if line.startswith("- ")], path
        assert 0 < len(added) <= most, (path, added)

    # A data directory made before the venue existed (its next start must add the venue's table).
    hot = tmp_path / "hot"
    made = run(before, ["-c", MIGRATE, str(hot)])
    assert made.returncode == 0, made.stderr[-3000:]

    shutil.copyfile(TOYEX / "walk_checks.py", walk / "tests" / "integration" / "test_toyex_walk.py")
    checks = run(
        walk,
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "toyex or contract_samples or has_a_simulator",
            "tests/unit/test_adapter_contract.py",
            "tests/unit/test_sim_market.py",
            "tests/unit/test_toyex.py",
            "tests/integration/test_toyex_walk.py",
        ],
        TOYEX_WALK_HOT=str(hot),
        TOYEX_WALK_SRC=str(walk / "src"),
    )
    report = checks.stdout[-6000:] + checks.stderr[-3000:]
    assert checks.returncode == 0, report
    passed = re.search(r"(\d+) passed", checks.stdout)
    assert passed and int(passed.group(1)) >= 17, report
    assert not re.search(r"\d+ skipped", checks.stdout), report
