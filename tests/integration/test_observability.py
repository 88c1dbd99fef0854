"""Observability end to end: promtool on the alert rules, a real Prometheus scraping a running
`k2 up --simulate` (every dashboard query and alert rule evaluated through its HTTP API, every
metric the code declares present), and `k2 health` exit codes when healthy, with a feed down,
with failing offloads, and on a stopped data directory."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from k2.simulator.simulator import read_exports
from tests.integration.test_up import K2, env_without_k2, wait_for_api, write_config

# These tests judge feeds, writer and archive: the disk check is kept out of their verdicts (it
# reads the real disk, which CI shares with whatever else the machine holds; it has its own test).
NOT_ABOUT_DISK = "disk_warn_pct = 0\ndisk_fail_pct = 0\n"

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules" / "k2.rules.yml"
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
NO_PROMETHEUS = (
    "promtool/prometheus not found: they come from Debian's `prometheus` package, which "
    "`make test` installs when run as root with apt-get available"
)
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMETHEUS)
needs_prometheus = pytest.mark.skipif(PROMETHEUS is None or PROMTOOL is None, reason=NO_PROMETHEUS)

# Exported by the cluster shape's k2 feed and k2 ingest only (test_cluster_processes.py).
FAMILIES = ROOT / "src" / "k2" / "observe" / "families.py"
BUS_ONLY = set(re.findall(r'"(k2_bus_[a-z0-9_]+)"', FAMILIES.read_text()))


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


# -- the rules on their own ------------------------------------------------------------------


@needs_promtool
def test_promtool_checks_the_rules_and_the_prometheus_config() -> None:
    for args in (
        ["check", "rules", str(RULES)],
        ["check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
    ):
        out = subprocess.run(
            [PROMTOOL, *args],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_promtool_unit_tests_fire_and_stay_silent_for_every_alert() -> None:
    tests = DEPLOY / "prometheus" / "tests" / "k2.rules.test.yml"
    out = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # type: ignore[list-item]
    assert out.returncode == 0, out.stdout + out.stderr
    cases = [
        t for block in yaml.safe_load(tests.read_text())["tests"] for t in block["alert_rule_test"]
    ]
    for rule in rules():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), (
            f"{rule['alert']}: no test where it stays silent"
        )


def test_every_alert_has_annotations_and_a_runbook_that_exists() -> None:
    for rule in rules():
        notes = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(notes), rule["alert"]
        path, _, anchor = notes["runbook"].partition("#")
        doc = ROOT / path
        assert doc.is_file(), f"{rule['alert']}: {path} missing"
        anchors = {
            github_anchor(line.lstrip("#"))
            for line in doc.read_text().splitlines()
            if line.startswith("#")
        }
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in {path}"
        index = (ROOT / "docs" / "runbooks" / "README.md").read_text()
        assert rule["alert"] in index, f"{rule['alert']} missing from the runbook index"


# -- a running k2 up, scraped by a real Prometheus -----------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def k2(config: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*K2, "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env_without_k2(),
        check=False,
    )


def health(config: Path) -> tuple[int, dict[str, str], dict[str, Any]]:
    out = k2(config, "health", "--json")
    body = json.loads(out.stdout)
    return out.returncode, {c["name"]: c["status"] for c in body["checks"]}, body


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Running:
    def __init__(self, tmp: Path, config: Path, api: str, prom: str) -> None:
        self.tmp, self.config, self.api, self.prom = tmp, config, api, prom

    def query(self, expr: str) -> dict[str, Any]:
        resp = httpx.get(f"{self.prom}/api/v1/query", params={"query": expr}, timeout=30)
        return dict(resp.json())


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    if PROMETHEUS is None or PROMTOOL is None:
        pytest.skip(NO_PROMETHEUS)
    tmp = tmp_path_factory.mktemp("observe")
    port = free_port()
    config = write_config(
        tmp, f"[archive]\nschedule_enabled = false\nretries = 0\n[health]\n{NOT_ABOUT_DISK}"
    )
    config.write_text(config.read_text().replace("port = 0", f"port = {port}"))
    with open(tmp / "up.log", "wb") as up_log:  # (the child has its own copy)
        up = subprocess.Popen(
            [*K2, "--config", str(config), "up", "--simulate"],
            env=env_without_k2(),
            stdout=up_log,
            stderr=subprocess.STDOUT,
        )
    prom_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    prom_config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    prom_config["rule_files"] = [str(DEPLOY / "prometheus" / r) for r in prom_config["rule_files"]]
    prom_config["scrape_configs"][0]["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
    prom_port = free_port()
    with open(tmp / "prometheus.log", "wb") as prom_log:
        prom = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=prom_log,
            stderr=subprocess.STDOUT,
        )
    try:
        api = wait_for_api(tmp / "data")
        assert api.endswith(f":{port}")
        prom_url = f"http://127.0.0.1:{prom_port}"
        wait_for(
            lambda: httpx.get(f"{prom_url}/-/ready", timeout=2).status_code == 200,
            60,
            "Prometheus ready",
        )
        wait_for(
            lambda: all(
                c["status"] == "OK"
                for c in httpx.get(f"{api}/health", timeout=10).json()["checks"]
                if c["name"].startswith(("feed ", "fresh "))
            ),
            90,
            "feeds live, data fresh",
        )
        for flow in (
            "offload",
            "maintenance",
            "reconcile",
        ):  # every flow once, so their metrics exist
            resp = httpx.post(f"{api}/api/flows/{flow}", json={}, timeout=300)
            assert resp.status_code == 200, resp.text
        httpx.get(f"{api}/api/trades", params={"limit": 5}, timeout=30).raise_for_status()
        time.sleep(8)  # several scrapes and rule evaluations after the flows ran
        yield Running(tmp, config, api, prom_url)
    finally:
        stop(prom)
        stop(up)


def panel_queries() -> list[tuple[str, str, str]]:
    found = []

    def walk(dashboard: str, panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(dashboard, panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    found.append((dashboard, panel.get("title", "?"), target["expr"]))

    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        walk(path.stem, json.loads(path.read_text())["panels"])
    return found


@needs_prometheus
def test_every_dashboard_panel_query_returns_data(running: Running) -> None:
    queries = panel_queries()
    assert len({d for d, _, _ in queries}) == 3 and len(queries) > 40
    failures = []
    for dashboard, title, expr in queries:
        body = running.query(expr.replace("$venue", ".+"))
        if body.get("status") != "success" or not body["data"]["result"]:
            failures.append(f"{dashboard} / {title}: {expr} -> {body.get('error') or 'no data'}")
    assert not failures, "\n".join(failures)


@needs_prometheus
def test_every_alert_rule_is_loaded_evaluates_cleanly_and_none_fires(running: Running) -> None:
    loaded = httpx.get(f"{running.prom}/api/v1/rules", timeout=30).json()["data"]["groups"]
    by_name = {r["name"]: r for g in loaded for r in g["rules"]}
    failures = []
    for rule in rules():
        got = by_name.get(rule["alert"])
        if got is None:
            failures.append(f"{rule['alert']}: not loaded")
            continue
        if got["health"] != "ok" or got.get("lastError"):
            failures.append(f"{rule['alert']}: {got['health']} {got.get('lastError')}")
        if got["state"] == "firing":
            failures.append(f"{rule['alert']}: firing in a healthy run: {got['alerts']}")
        body = running.query(rule["expr"])
        if body.get("status") != "success":
            failures.append(f"{rule['alert']}: {body.get('error')}")
        # every input series exists (the bus's come from k2 feed and k2 ingest, which a k2 up run
        # has not: test_cluster_processes.py scrapes those)
        for metric in set(re.findall(r"\b(k2_[a-z0-9_]+|up)\b", rule["expr"])) - BUS_ONLY:
            if not running.query(metric)["data"]["result"]:
                failures.append(f"{rule['alert']}: no data for {metric}")
    assert not failures, "\n".join(failures)


@needs_prometheus
def test_every_metric_the_code_declares_is_set_and_scraped(running: Running) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "k2" / "observe").glob("*.py"))
    declared = set(re.findall(r'"(k2_[a-z0-9_]+)"', source)) - {"k2_"} - BUS_ONLY
    assert len(declared) > 60
    families = text_string_to_metric_families(httpx.get(f"{running.api}/metrics", timeout=30).text)
    exported = {f.name: f for f in families}
    unset = []
    for name in sorted(declared):
        family = exported.get(name.removesuffix("_total"))
        if family is None or not family.samples:
            unset.append(f"{name}: no samples in /metrics")
        elif not running.query(f'{{__name__=~"{name}(_bucket|_total)?"}}')["data"]["result"]:
            unset.append(f"{name}: not in Prometheus")
    assert not unset, "\n".join(unset)
    for name in ("k2_process_resident_memory_bytes", "k2_process_cpu_seconds_total"):
        assert running.query(name)["data"]["result"], name


@needs_prometheus
def test_health_is_ok_on_a_healthy_run(running: Running) -> None:
    code, checks, body = health(running.config)
    assert code == 0, json.dumps(body, indent=1)
    assert len([n for n in checks if n.startswith("offload ")]) == 10 and "disk" in checks


@needs_prometheus
def test_health_warns_then_fails_on_failing_offloads_and_recovers(running: Running) -> None:
    # Make the silver table's data directory unwritable for the offload: a file where it should be.
    data = next((running.tmp / "data" / "lake" / "warehouse").glob("*/silver_trades/data"))
    data.rename(data.with_name("data.moved"))
    data.write_text("not a directory")
    try:
        assert k2(running.config, "offload").returncode != 0
        code, checks, body = health(running.config)
        assert (code, checks["offload silver_trades"]) == (1, "WARN"), json.dumps(body, indent=1)
        assert checks["offload bronze_trades_kraken"] == "OK"  # the other tables carry on
        for _ in range(2):
            assert k2(running.config, "offload").returncode != 0
        code, checks, body = health(running.config)
        assert (code, checks["offload silver_trades"]) == (2, "FAIL"), json.dumps(body, indent=1)
        metrics = httpx.get(f"{running.api}/metrics", timeout=30).text
        assert 'k2_offload_consecutive_failures{table="silver_trades"} 3.0' in metrics
    finally:
        data.unlink()
        data.with_name("data.moved").rename(data)
    assert k2(running.config, "offload").returncode == 0
    code, checks, body = health(running.config)
    assert code == 0, json.dumps(body, indent=1)


def test_health_fails_with_a_feed_down_and_on_a_stopped_data_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"[health]\nfeed_down_s = 3\n{NOT_ABOUT_DISK}")
    env = env_without_k2() | {"K2_INSTRUMENTS_FILE": str(tmp_path / "instruments.toml")}
    sim = subprocess.Popen(
        [*K2, "simulate", "--port", "0", "--rate", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert sim.stdout is not None
    exports = read_exports(sim.stdout)
    # nothing listens: kraken stays down
    exports["K2_VENUES__KRAKEN__WS_URL"] = f"ws://127.0.0.1:{free_port()}"
    up = subprocess.Popen(
        [*K2, "--config", str(config), "up"],
        env=env | exports,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        api = wait_for_api(tmp_path / "data")
        wait_for(
            lambda: (
                {
                    c["name"]: c["status"]
                    for c in httpx.get(f"{api}/health", timeout=10).json()["checks"]
                }.get("feed binance")
                == "OK"
            ),
            60,
            "binance live",
        )
        time.sleep(4)  # past feed_down_s
        code, checks, body = health(config)
        assert code == 2, json.dumps(body, indent=1)
        assert (
            checks["feed kraken"] == "FAIL"
            and checks["feed binance"] == "OK"
            and checks["feed coinbase"] == "OK"
        )
        assert httpx.get(f"{api}/health", timeout=10).status_code == 503
    finally:
        stop(up)
        stop(sim)
    code, checks, body = health(config)  # k2 up stopped: read the data directory itself
    assert code == 2 and checks["feeds"] == "FAIL", json.dumps(body, indent=1)
    assert checks["fresh silver_trades"] in ("OK", "WARN")  # judged from what the directory holds
