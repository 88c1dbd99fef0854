"""The compose stack (deploy/compose.yaml), validated without a container engine.

The Compose Specification's schema (check-jsonschema), then what a schema cannot see: every
reference between services, volumes, networks, secrets, variables of deploy/.env.example, files
of the repository and K2's own settings, each check also run against a copy broken on purpose to
show that it can fail. Then the observability files the stack mounts: the Prometheus config
(promtool), the Alertmanager config (amtool, and alerts routed by a real Alertmanager on
loopback to webhook receivers in this test), the Grafana provisioning, and the Dockerfile.
"""

from __future__ import annotations

import copy
import http.server
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.compose.yml"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
RENDER = DEPLOY / "alertmanager" / "render.sh"
RULES = DEPLOY / "prometheus" / "rules"

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
NO_PROMTOOL = (
    "promtool not found: it comes from Debian's `prometheus` package, which `make test` "
    "installs when run as root with apt-get available"
)
NO_ALERTMANAGER = (
    "amtool/prometheus-alertmanager not found: they come from Debian's "
    "`prometheus-alertmanager` package, which `make test` installs when run as root with apt-get"
)
HAS_CHECK_JSONSCHEMA = importlib.util.find_spec("check_jsonschema") is not None
CHECK_JSONSCHEMA = [sys.executable, "-m", "check_jsonschema"]
NO_CHECK_JSONSCHEMA = "check-jsonschema not installed: it is a dev extra (pip install -e '.[dev]')"

SECRETS_DIR = "/run/secrets/"
# What the Dockerfile sets for every K2 container (ENV), besides what compose gives each service.
IMAGE_ENV = {"K2_DATA_DIR": "/var/lib/k2/data"}

Compose = dict[str, Any]


# -- reading the files ---------------------------------------------------------------------------


def load_compose() -> Compose:
    """deploy/compose.yaml as compose reads it (YAML anchors and merge keys resolved)."""
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def env_example() -> dict[str, str]:
    values = {}
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value in {ENV_EXAMPLE.name}: {line!r}"
            values[name.strip()] = value.strip()
    return values


_VARIABLE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML document (keys are not interpolated)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation of one value (`$$` is a literal `$`)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?") and not value and (op == ":?" or value is None):
            raise KeyError(f"{name}: {arg}")
        if op in (":+", "+"):
            return arg if value else ""
        if value is None:
            raise KeyError(name)
        return value

    return _VARIABLE.sub(one, text)


def service_env(service: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def is_k2(service: dict[str, Any]) -> bool:
    return "build" in service


def one_shots(compose: Compose) -> set[str]:
    """Services others wait for to finish (service_completed_successfully)."""
    return {
        name
        for svc in compose["services"].values()
        for name, dep in _depends(svc).items()
        if dep.get("condition") == "service_completed_successfully"
    }


def _depends(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    return {d: {} for d in deps} if isinstance(deps, list) else dict(deps)


def _mounts(service: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(type, source, target) of each volume entry: type 'bind' or 'volume'."""
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            yield entry["type"], entry.get("source", ""), entry["target"]
            continue
        source, _, rest = entry.partition(":")
        target = rest.split(":", 1)[0] if rest else source
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        yield kind, source if rest else "", target


def _published(entry: Any) -> tuple[str, str] | None:
    """(host port, protocol) a ports entry publishes, None for a container-only port."""
    if isinstance(entry, dict):
        host = entry.get("published")
        return (str(host), entry.get("protocol", "tcp")) if host else None
    spec, _, proto = str(entry).partition("/")
    parts = spec.rsplit(":", 2)
    return (parts[-2], proto or "tcp") if len(parts) >= 2 else None


def bind_source(source: str) -> Path:
    return (DEPLOY / source).resolve()


# -- the cross-reference checks: each returns what is wrong (empty: nothing) ---------------------


def missing_dependencies(compose: Compose) -> list[str]:
    services = compose["services"]
    problems = []
    for name, svc in services.items():
        for dep, spec in _depends(svc).items():
            condition = spec.get("condition", "service_started")
            if dep not in services:
                problems.append(f"{name} depends on {dep}, which is not a service")
            elif condition == "service_healthy" and "healthcheck" not in services[dep]:
                problems.append(f"{name} waits for {dep} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and services[dep].get(
                "restart", "no"
            ) not in ("no", "on-failure"):
                problems.append(f"{name} waits for {dep} to finish, but it restarts forever")
    return problems


def duplicate_host_ports(compose: Compose) -> list[str]:
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for name, svc in compose["services"].items():
        for entry in svc.get("ports") or []:
            key = _published(entry)
            if key is None:
                continue
            if key in seen:
                problems.append(f"host port {key[0]}/{key[1]}: {seen[key]} and {name}")
            seen[key] = name
    return problems


def undeclared_references(compose: Compose) -> list[str]:
    """Named volumes, networks and secrets services use but the top level does not declare
    (and declared ones nothing uses)."""
    declared = {kind: set(compose.get(kind) or {}) for kind in ("volumes", "networks", "secrets")}
    used: dict[str, set[str]] = {kind: set() for kind in declared}
    problems = []
    for name, svc in compose["services"].items():
        for kind, source, _ in _mounts(svc):
            if kind == "volume" and source:
                used["volumes"].add(source)
        nets = svc.get("networks") or []
        used["networks"] |= set(nets)
        for entry in svc.get("secrets") or []:
            used["secrets"].add(entry["source"] if isinstance(entry, dict) else entry)
        if not nets:
            problems.append(f"{name} is on no network (the stack has one: k2)")
    for kind, names in declared.items():
        problems += [f"{kind[:-1]} {n} is used but not declared" for n in used[kind] - names]
        problems += [f"{kind[:-1]} {n} is declared but unused" for n in names - used[kind]]
    if len(declared["networks"]) != 1:
        problems.append(f"one network expected, found {sorted(declared['networks'])}")
    return problems


def undefined_variables(compose: Compose, defined: set[str] | None = None) -> list[str]:
    """Variables interpolated (or read by a secret) without a default and missing from
    .env.example; and variables .env.example defines that nothing uses."""
    defined = set(env_example()) if defined is None else defined
    needed, used = set(), set()
    for text in strings(compose):
        for m in _VARIABLE.finditer(text):
            name = m.group("name") or m.group("bare")
            if name is None:
                continue  # $$: a literal $, for the container's shell
            used.add(name)
            if m.group("op") not in (":-", "-"):
                needed.add(name)
    for secret in (compose.get("secrets") or {}).values():
        if "environment" in secret:
            needed.add(secret["environment"])
            used.add(secret["environment"])
    problems = [f"${{{n}}} is not in deploy/.env.example" for n in sorted(needed - defined)]
    problems += [f"{n} in deploy/.env.example is never used" for n in sorted(defined - used)]
    return problems


def missing_bind_sources(compose: Compose) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        for kind, source, target in _mounts(svc):
            if kind == "bind" and not bind_source(source).exists():
                problems.append(f"{name} mounts {source} (at {target}), which does not exist")
    return problems


def unpinned_images(compose: Compose) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        image = svc.get("image")
        if not image:
            problems.append(f"{name} has no image")
            continue
        ref = image.split("@", 1)[0]
        last = ref.rsplit("/", 1)[-1]
        tag = last.split(":", 1)[1] if ":" in last else ""
        if not tag or tag == "latest" or not re.search(r"\d", tag):
            problems.append(f"{name}: image {image} has no pinned tag")
    return problems


def missing_health_or_limits(compose: Compose) -> list[str]:
    problems = []
    oneshot = one_shots(compose)
    for name, svc in compose["services"].items():
        limits = (svc.get("deploy") or {}).get("resources", {}).get("limits", {})
        if not {"cpus", "memory"} <= set(limits):
            problems.append(f"{name} has no cpus and memory limits")
        if name in oneshot:
            continue
        check = svc.get("healthcheck") or {}
        if not check.get("test") or check.get("disable"):
            problems.append(f"{name} runs for good but has no healthcheck")
        if svc.get("restart") not in ("always", "unless-stopped"):
            problems.append(f"{name} runs for good but is not restarted")
    return problems


def scaling_blockers(compose: Compose, name: str = "ingest") -> list[str]:
    svc = compose["services"].get(name)
    if svc is None:
        return [f"no {name} service"]
    problems = [
        f"{name} sets {key}: replicas would collide"
        for key in ("container_name", "hostname")
        if key in svc
    ]
    problems += [f"{name} publishes host port {p}" for p in svc.get("ports") or [] if _published(p)]
    return problems


def broken_settings(compose: Compose, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Load K2's settings as each K2 service would (its environment, values from .env.example,
    its secrets as files); a variable naming no setting, a bad value or a missing secret fails."""
    from k2.api.server import check_exposure
    from k2.errors import K2Error
    from k2.settings import load_settings

    env = env_example()
    top_secrets = compose.get("secrets") or {}
    tmp.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp)  # no k2.toml from the working directory
    problems = []
    for name, svc in compose["services"].items():
        if not is_k2(svc):
            continue
        mine = {s if isinstance(s, str) else s["source"] for s in svc.get("secrets") or []}
        variables = IMAGE_ENV | service_env(svc, env)
        for key, value in list(variables.items()):
            if value.startswith(SECRETS_DIR):
                secret = value.removeprefix(SECRETS_DIR)
                if secret not in mine or secret not in top_secrets:
                    problems.append(f"{name}: {key} names secret {secret}, not given to it")
                    continue
                path = tmp / name / secret
                path.parent.mkdir(exist_ok=True)
                path.write_text(env.get(top_secrets[secret].get("environment", ""), "") + "\n")
                variables[key] = str(path)
        with monkeypatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("K2_")]:
                mp.delenv(key)
            for key, value in variables.items():
                mp.setenv(key, value)
            try:
                cfg = load_settings()
                if cfg.api.host not in ("127.0.0.1", "localhost", "::1") and name == "api":
                    check_exposure(cfg.api)
                if cfg.archive.warehouse and cfg.archive.warehouse.startswith("s3://"):
                    cfg.archive.s3.key("access_key_id")
                    cfg.archive.s3.key("secret_access_key")
            except (K2Error, ValueError) as err:  # (a malformed JSON value: SettingsError)
                problems.append(f"{name}: {err}")
    return problems


# -- the shipped file passes every check, and a broken copy fails it ---------------------------

Break = Callable[[Compose], None]


def _set_depends(service: str, dep: str) -> Break:
    def apply(c: Compose) -> None:
        c["services"][service].setdefault("depends_on", {})[dep] = {"condition": "service_healthy"}

    return apply


def _add_port(c: Compose) -> None:
    c["services"]["prometheus"]["ports"].append("3000:9090")


def _undeclared_volume(c: Compose) -> None:
    c["services"]["grafana"]["volumes"].append("grafana-plugins:/var/lib/grafana/plugins")


def _undefined_variable(c: Compose) -> None:
    c["services"]["grafana"]["environment"]["GF_SMTP_PASSWORD"] = "${SMTP_PASSWORD:?set it}"


def _missing_file(c: Compose) -> None:
    c["services"]["prometheus"]["volumes"][0] = "./prometheus/nope.yml:/etc/prometheus/p.yml:ro"


def _latest(c: Compose) -> None:
    c["services"]["grafana"]["image"] = "grafana/grafana:latest"


def _no_healthcheck(c: Compose) -> None:
    del c["services"]["clickhouse"]["healthcheck"]


def _no_limits(c: Compose) -> None:
    del c["services"]["minio-init"]["deploy"]


def _container_name(c: Compose) -> None:
    c["services"]["ingest"]["container_name"] = "k2-ingest"


CHECKS: dict[str, tuple[Callable[[Compose], list[str]], list[Break]]] = {
    "depends_on targets exist": (
        missing_dependencies,
        [_set_depends("api", "clickhous"), _set_depends("grafana", "minio-init")],
    ),
    "no host port twice": (duplicate_host_ports, [_add_port]),
    "volumes, networks, secrets declared": (undeclared_references, [_undeclared_volume]),
    "variables in .env.example": (undefined_variables, [_undefined_variable]),
    "bind mounts exist": (missing_bind_sources, [_missing_file]),
    "images pinned": (unpinned_images, [_latest]),
    "healthchecks and limits": (missing_health_or_limits, [_no_healthcheck, _no_limits]),
    "ingest scales": (scaling_blockers, [_container_name]),
}


@pytest.mark.parametrize("name", CHECKS)
def test_cross_reference_check_passes_and_catches_a_break(name: str) -> None:
    check, breaks = CHECKS[name]
    compose = load_compose()
    assert check(compose) == []
    for apply in breaks:
        broken = copy.deepcopy(compose)
        apply(broken)
        assert check(broken), f"{apply.__name__}: not caught"


@pytest.mark.skipif(not HAS_CHECK_JSONSCHEMA, reason=NO_CHECK_JSONSCHEMA)
def test_compose_file_matches_the_compose_specification(tmp_path: Path) -> None:
    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CHECK_JSONSCHEMA, "--builtin-schema", "vendor.compose-spec", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    out = check(COMPOSE)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "version" not in load_compose()  # obsolete in the Compose Specification
    broken = load_compose()
    broken["services"]["api"]["healthchek"] = broken["services"]["api"].pop("healthcheck")
    (tmp_path / "compose.yaml").write_text(yaml.safe_dump(broken))
    out = check(tmp_path / "compose.yaml")
    assert out.returncode != 0 and "healthchek" in out.stdout + out.stderr, out.stdout


def test_every_k2_variable_names_a_setting_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = load_compose()
    k2_services = sorted(n for n, s in compose["services"].items() if is_k2(s))
    assert k2_services == ["api", "feed-binance", "feed-coinbase", "feed-kraken", "flows", "ingest"]
    assert broken_settings(compose, tmp_path / "ok", monkeypatch) == []
    for key, value in (
        ("K2_BUS__BOOTSTRAP_SERVER", "redpanda:9092"),  # a typo: no such setting
        ("K2_API__TOKEN_FILE", "/run/secrets/lake_access_key_id"),  # too short to be a token
        ("K2_API__ALLOWED_HOSTS", "api"),  # not a JSON list
    ):
        broken = load_compose()
        broken["services"]["api"]["environment"][key] = value
        assert broken_settings(broken, tmp_path / key, monkeypatch), f"{key}={value} not caught"
    broken = load_compose()
    broken["services"]["flows"]["secrets"].remove("lake_access_key_id")
    assert broken_settings(broken, tmp_path / "secret", monkeypatch)


def test_k2_services_run_the_right_commands_against_the_right_servers() -> None:
    compose = load_compose()
    services, env = compose["services"], env_example()
    for venue in ("binance", "kraken", "coinbase"):
        assert services[f"feed-{venue}"]["command"] == ["feed", "--venue", venue]
    assert services["ingest"]["command"] == ["ingest"]
    assert services["api"]["command"] == ["api"]
    assert services["flows"]["command"] == ["flows", "serve"]
    flows = service_env(services["flows"], env)
    assert flows["PREFECT_API_URL"] == "http://prefect:4200/api"
    store = service_env(services["flows"], env)
    assert store["K2_HOTSTORE__URL"].endswith("@clickhouse:8123")
    assert store["K2_ARCHIVE__CATALOG_URI"].startswith("postgresql+psycopg2://")
    assert store["K2_ARCHIVE__CATALOG_URI"].endswith("@postgres:5432/k2_catalog")
    assert store["K2_ARCHIVE__WAREHOUSE"] == f"s3://{env['LAKE_BUCKET']}/warehouse"
    assert store["K2_ARCHIVE__S3__ENDPOINT"] == "http://minio:9000"
    prefect = service_env(services["prefect"], env)
    url = prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert url.startswith("postgresql+asyncpg://") and url.endswith("@postgres:5432/prefect")
    assert prefect["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    # the two databases the services use are the two the init script makes (k2_catalog: the
    # image's POSTGRES_DB)
    assert service_env(services["postgres"], env)["POSTGRES_DB"] == "k2_catalog"
    init = (DEPLOY / "postgres" / "init" / "10-k2-databases.sql").read_text()
    assert "CREATE DATABASE prefect;" in init and "pg_trgm" in init
    assert service_env(services["ingest"], env)["K2_HOTSTORE__URL"] == store["K2_HOTSTORE__URL"]
    # the services that need the bucket wait for it
    for name in ("api", "flows"):
        assert _depends(services[name])["minio-init"]["condition"] == (
            "service_completed_successfully"
        )
    # host ports only for what a user opens, on loopback
    published = {name: [str(p) for p in svc.get("ports") or []] for name, svc in services.items()}
    assert {n: p for n, p in published.items() if p} == {
        "prefect": ["127.0.0.1:4200:4200"],
        "api": ["127.0.0.1:8000:8000"],
        "prometheus": ["127.0.0.1:9090:9090"],
        "alertmanager": ["127.0.0.1:9093:9093"],
        "grafana": ["127.0.0.1:3000:3000"],
    }
    # the credentials the stack hands K2 are the ones it creates
    ch = service_env(services["clickhouse"], env)
    assert f"//{ch['CLICKHOUSE_USER']}:{ch['CLICKHOUSE_PASSWORD']}@" in store["K2_HOTSTORE__URL"]
    assert f":{env['POSTGRES_PASSWORD']}@" in store["K2_ARCHIVE__CATALOG_URI"]


def test_every_prefect_variable_names_a_prefect_setting() -> None:
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_valid_setting_names  # (prefect is pinned)

    valid = set(_get_valid_setting_names(Settings))
    used = {
        (name, key)
        for name, svc in load_compose()["services"].items()
        for key in (svc.get("environment") or {})
        if key.startswith("PREFECT_")
    }
    assert len(used) >= 5
    assert [u for u in sorted(used) if u[1] not in valid] == []


def test_env_example_is_complete_and_the_real_env_file_is_ignored() -> None:
    env = env_example()
    assert not [n for n in env if n.startswith("K2_")], "K2 would read these as settings"
    assert len(env["API_TOKEN"]) >= 16
    assert all(v for v in env.values())
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "deploy/.env"], cwd=ROOT, check=False, timeout=30
    )
    assert ignored.returncode == 0, "deploy/.env must be in .gitignore"
    tracked = subprocess.run(
        ["git", "ls-files", "deploy/.env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert tracked.stdout == ""


def test_healthcheck_commands_are_valid_python_and_probe_the_right_ports() -> None:
    compose, env = load_compose(), env_example()
    for name, svc in compose["services"].items():
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"{name} healthcheck", "exec")
        if is_k2(svc) and name not in ("api", "flows"):  # /metrics on bus.metrics_port
            port = service_env(svc, env)["K2_BUS__METRICS_PORT"]
            assert f"127.0.0.1:{port}/metrics" in test[3], name
    api = service_env(compose["services"]["api"], env)
    assert (
        f"127.0.0.1:{api['K2_API__PORT']}/" in compose["services"]["api"]["healthcheck"]["test"][3]
    )
    assert any(p.endswith(f":{api['K2_API__PORT']}") for p in compose["services"]["api"]["ports"])


def test_dockerfile_builds_the_k2_image_the_services_use() -> None:
    compose = load_compose()
    text = (ROOT / "Dockerfile").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, svc in compose["services"].items():
        if is_k2(svc):
            assert (DEPLOY / svc["build"]["context"]).resolve() == ROOT, name
            assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
            assert svc["image"] == f"k2:{version}", name
    base = re.search(r"^FROM (\S+)", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1)), base
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] == "k2", users  # the last USER is the one the services run as
    assert 'ENTRYPOINT ["k2"]' in text
    assert re.search(r"^RUN pip install \.( |$)", text, re.MULTILINE) and "[dev]" not in text
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for sources in re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert (ROOT / source).exists(), source
            assert source not in ignored, f"{source} is copied but .dockerignore drops it"
    assert {".git", ".venv", "deploy", "tests"} <= ignored  # deploy/.env stays out of the image


# -- Prometheus ---------------------------------------------------------------------------------


def prometheus_problems(compose: Compose, config: dict[str, Any]) -> list[str]:
    """What the compose Prometheus config points at that the stack does not have."""
    services, env = compose["services"], env_example()
    listens = {"alertmanager": "9093", "prometheus": "9090"}
    for name, svc in services.items():
        if is_k2(svc):
            variables = service_env(svc, env)
            listens[name] = variables.get("K2_BUS__METRICS_PORT", "")
            if name == "api":
                listens[name] = variables["K2_API__PORT"]
    problems = []
    targets = [s for am in config["alerting"]["alertmanagers"] for s in am["static_configs"]]
    for job in config["scrape_configs"]:
        targets += job.get("static_configs", [])
        for sd in job.get("dns_sd_configs", []):
            for host in sd["names"]:
                if scaling_blockers(compose, host) or str(sd["port"]) != listens.get(host):
                    problems.append(f"{job['job_name']}: DNS {host}:{sd['port']} is not a replica")
        auth = (job.get("authorization") or {}).get("credentials_file")
        if auth:
            secret = auth.removeprefix(SECRETS_DIR)
            if secret not in services["prometheus"].get("secrets", []):
                problems.append(f"{job['job_name']}: {auth} is not mounted in prometheus")
            token = service_env(services["api"], env).get("K2_API__TOKEN_FILE")
            if token != auth:
                problems.append(f"{job['job_name']}: sends {auth}, the API checks {token}")
    for group in targets:
        for target in group["targets"]:
            host, _, port = target.rpartition(":")
            if host == "localhost":
                host = "prometheus"
            if host not in services or listens.get(host) != port:
                problems.append(f"target {target}: no service listens there")
    k2_jobs = [j for j in config["scrape_configs"] if j["job_name"] == "k2"]
    scraped = {
        t.rpartition(":")[0]
        for j in k2_jobs
        for s in j.get("static_configs", [])
        for t in s["targets"]
    } | {h for j in k2_jobs for sd in j.get("dns_sd_configs", []) for h in sd["names"]}
    missing = {n for n, s in services.items() if is_k2(s) and n != "flows"} - scraped
    problems += [f"{n} is not scraped by job k2 (K2Down watches that job)" for n in missing]
    return problems


def test_prometheus_config_targets_the_compose_services() -> None:
    compose = load_compose()
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert prometheus_problems(compose, config) == []
    assert config["scrape_configs"][0]["dns_sd_configs"][0]["type"] == "A"
    mounts = {t: s for _, s, t in _mounts(compose["services"]["prometheus"])}
    assert bind_source(mounts["/etc/prometheus/prometheus.yml"]) == PROMETHEUS_CONFIG
    assert bind_source(mounts["/etc/prometheus/rules"]) == RULES
    for mutate in (
        lambda c: c["scrape_configs"][0]["static_configs"][1]["targets"].append("feed-x:9100"),
        lambda c: c["scrape_configs"][0]["dns_sd_configs"][0].update(port=9200),
        lambda c: c["alerting"]["alertmanagers"][0]["static_configs"][0].update(
            targets=["alertmanager:9094"]
        ),
        lambda c: c["scrape_configs"][0]["static_configs"].pop(0),  # the API not scraped
        lambda c: c["scrape_configs"][0]["authorization"].update(credentials_file="/x/token"),
    ):
        broken = copy.deepcopy(config)
        mutate(broken)
        assert prometheus_problems(compose, broken), "a broken Prometheus config passed"


def container_layout(tmp: Path, service: dict[str, Any]) -> Path:
    """Copy a service's bind mounts to where the container sees them, under `tmp`."""
    for kind, source, target in _mounts(service):
        if kind == "bind":
            where = tmp / target.lstrip("/")
            where.parent.mkdir(parents=True, exist_ok=True)
            src = bind_source(source)
            if src.is_dir():
                shutil.copytree(src, where)
            else:
                shutil.copy(src, where)
    for secret in service.get("secrets") or []:
        path = tmp / SECRETS_DIR.strip("/") / secret
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env_example()["API_TOKEN"] + "\n")
    return tmp


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_checks_the_compose_prometheus_config_and_its_rules(tmp_path: Path) -> None:
    layout = container_layout(tmp_path, load_compose()["services"]["prometheus"])
    config = layout / "etc" / "prometheus" / "prometheus.yml"
    # the one absolute path in it (the secret), moved under the layout too
    config.write_text(config.read_text().replace(SECRETS_DIR, f"{layout}{SECRETS_DIR}"))
    outputs = []
    for args in (["check", "config", str(config)], ["check", "rules", str(RULES / "k2.rules.yml")]):
        out = subprocess.run(
            [PROMTOOL, *args],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        outputs.append(out.stdout + out.stderr)
    # rule_files resolved in the container layout: the rules were found, and checked with it
    assert "1 rule files found" in outputs[0], outputs[0]
    assert f"{len(yaml_rules())} rules found" in outputs[0], outputs[0]
    assert f"SUCCESS: {len(yaml_rules())} rules found" in outputs[1], outputs[1]


def yaml_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((RULES / "k2.rules.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


# -- Alertmanager -------------------------------------------------------------------------------


def test_alertmanager_routes_on_the_severities_the_rules_set() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    severities = {r["labels"]["severity"] for r in yaml_rules()}
    assert severities == {"critical", "warning"}
    labels = {k for r in yaml_rules() for k in r["labels"]}
    assert labels == {"severity", "family"}
    route = config["route"]
    assert [r["matchers"] for r in route["routes"]] == [['severity="critical"']]
    assert {r["name"] for r in config["receivers"]} == {"critical", "default"}
    assert route["receiver"] == "default" and route["routes"][0]["receiver"] == "critical"
    # group_by names labels the alerts carry (their rule labels, or their expressions' labels)
    exprs = " ".join(r["expr"] + json.dumps(r["annotations"]) for r in yaml_rules())
    for label in route["group_by"]:
        assert label == "alertname" or label in exprs, label
    compose = load_compose()
    am = compose["services"]["alertmanager"]
    mounts = {t: s for _, s, t in _mounts(am)}
    assert bind_source(mounts["/etc/alertmanager/alertmanager.yml"]) == ALERTMANAGER_CONFIG
    assert bind_source(mounts["/etc/alertmanager/render.sh"]) == RENDER
    assert am["entrypoint"][1:4] == [
        "/etc/alertmanager/render.sh",
        "/etc/alertmanager/alertmanager.yml",
        "/alertmanager/alertmanager.rendered.yml",
    ]
    assert "--config.file=/alertmanager/alertmanager.rendered.yml" in am["entrypoint"]


@pytest.mark.skipif(AMTOOL is None, reason=NO_ALERTMANAGER)
def test_amtool_checks_the_config_and_its_routes(tmp_path: Path) -> None:
    def amtool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AMTOOL, *args],  # type: ignore[list-item]
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    out = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr
    rendered = render(tmp_path, "https://hooks.example/a?x=1&y=2", "http://hooks.example/b")
    out = amtool("check-config", str(rendered))
    assert out.returncode == 0, out.stdout + out.stderr
    for labels, receiver in (
        (["severity=critical", "alertname=K2FeedDown", "venue=kraken"], "critical"),
        (["severity=warning", "alertname=K2FeedFlapping", "venue=kraken"], "default"),
        (["alertname=SomethingElse"], "default"),
    ):
        config = f"--config.file={ALERTMANAGER_CONFIG}"
        out = amtool("config", "routes", "test", config, *labels)
        assert out.returncode == 0 and out.stdout.strip() == receiver, (labels, out.stdout)
    broken = tmp_path / "broken.yml"
    broken.write_text(ALERTMANAGER_CONFIG.read_text().replace("receiver: critical", "receiver: x"))
    assert amtool("check-config", str(broken)).returncode != 0


def run_render(tmp: Path, critical: str, default: str) -> subprocess.CompletedProcess[str]:
    """render.sh as the container runs it, with these webhook URLs (and `true` to exec)."""
    return subprocess.run(
        ["sh", str(RENDER), str(ALERTMANAGER_CONFIG), str(tmp / "rendered.yml"), "true"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ALERT_WEBHOOK_CRITICAL_URL": critical,
            "ALERT_WEBHOOK_DEFAULT_URL": default,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def render(tmp: Path, critical: str, default: str) -> Path:
    """The config as render.sh writes it in the container, with these webhook URLs."""
    out = run_render(tmp, critical, default)
    assert out.returncode == 0, out.stderr
    return tmp / "rendered.yml"


def test_render_puts_the_webhook_urls_in_literally_and_refuses_bad_ones(tmp_path: Path) -> None:
    url = "https://hooks.example/T0/B1?token=a&b=c|d"
    config = yaml.safe_load(render(tmp_path, url, "http://other.example/x").read_text())
    hooks = {r["name"]: r["webhook_configs"][0]["url"] for r in config["receivers"]}
    assert hooks == {"critical": url, "default": "http://other.example/x"}
    (tmp_path / "bad").mkdir()
    for critical, error in (
        ("", "ALERT_WEBHOOK_CRITICAL_URL must be an http:// or https:// URL"),
        ("ftp://x.example/", "must be an http:// or https:// URL"),
        ('http://x.example/"', "must not contain quotes"),
        ("http://x.example/ y", "must not contain quotes"),
    ):
        out = run_render(tmp_path / "bad", critical, "http://x.example/")
        assert out.returncode == 2 and error in out.stderr, (critical, out.stderr)
    assert list((tmp_path / "bad").iterdir()) == []  # nothing written, nothing started


class Hooks(http.server.ThreadingHTTPServer):
    """Webhook receivers: every POST's path and JSON body."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.posts.append((self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def received(self, path: str) -> set[str]:
        with self.lock:
            return {
                a["labels"]["alertname"]
                for p, body in self.posts
                if p == path
                for a in body["alerts"]
            }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := check():
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(ALERTMANAGER is None, reason=NO_ALERTMANAGER)
def test_a_real_alertmanager_routes_by_severity_and_inhibits_warnings(tmp_path: Path) -> None:
    hooks = Hooks()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{hooks.server_address[1]}"
    config_path = render(tmp_path, f"{base}/critical", f"{base}/default")
    config = yaml.safe_load(config_path.read_text())
    for route in (config["route"], *config["route"]["routes"]):  # fast, in this copy only
        route.update(group_wait="1s", group_interval="1s")
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [
            ALERTMANAGER,  # type: ignore[list-item]
            f"--config.file={config_path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{api}/-/ready", timeout=2).status_code == 200, 20, "ready")
        now = datetime.now(UTC)

        def alert(name: str, **labels: str) -> dict[str, Any]:
            rule = next(r for r in yaml_rules() if r["alert"] == name)
            return {
                "labels": {"alertname": name, "instance": "api:8000", **rule["labels"], **labels},
                "annotations": {"summary": name},
                "startsAt": now.isoformat(),
                "endsAt": (now + timedelta(minutes=10)).isoformat(),
            }

        alerts = [
            alert("K2OffloadLagCritical", table="silver_trades"),
            alert("K2OffloadLagWarning", table="silver_trades"),  # inhibited by the critical one
            alert("K2OffloadLagWarning", table="ohlcv_1m"),  # another table: not inhibited
            alert("K2FeedFlapping", venue="kraken"),
        ]
        httpx.post(f"{api}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()
        wait_until(
            lambda: hooks.received("/critical") and hooks.received("/default"), 20, "webhooks"
        )
        wait_until(
            lambda: len(hooks.received("/default") | hooks.received("/critical")) == 3,
            10,
            "every group notified",
        )
        assert hooks.received("/critical") == {"K2OffloadLagCritical"}
        assert hooks.received("/default") == {"K2FeedFlapping", "K2OffloadLagWarning"}
        with hooks.lock:
            warned = [
                a["labels"]["table"]
                for p, body in hooks.posts
                for a in body["alerts"]
                if a["labels"]["alertname"] == "K2OffloadLagWarning"
            ]
        assert set(warned) == {"ohlcv_1m"}
        state = {
            (a["labels"]["alertname"], a["labels"].get("table")): a["status"]
            for a in httpx.get(f"{api}/api/v2/alerts", timeout=10).json()
        }
        silenced = state[("K2OffloadLagWarning", "silver_trades")]
        assert silenced["state"] == "suppressed" and silenced["inhibitedBy"], silenced
        assert state[("K2OffloadLagWarning", "ohlcv_1m")]["state"] == "active"
        assert {body["receiver"] for p, body in hooks.posts} == {"critical", "default"}
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
        hooks.shutdown()
        hooks.server_close()


# -- Grafana ------------------------------------------------------------------------------------


def grafana_problems(compose: Compose, provisioning: Path) -> list[str]:
    grafana = compose["services"]["grafana"]
    mounts = {bind_source(s): t for kind, s, t in _mounts(grafana) if kind == "bind"}
    problems = []
    if mounts.get(provisioning.resolve()) != "/etc/grafana/provisioning":
        problems.append("deploy/grafana/provisioning is not mounted at /etc/grafana/provisioning")
    dashboards_at = mounts.get((DEPLOY / "grafana" / "dashboards").resolve())
    for path in sorted((provisioning / "dashboards").glob("*.yml")):
        for provider in yaml.safe_load(path.read_text())["providers"]:
            if provider["options"]["path"] != dashboards_at:
                problems.append(
                    f"provider {provider['name']} reads {provider['options']['path']}, "
                    f"the dashboards are mounted at {dashboards_at}"
                )
    sources = [
        d for p in sorted((provisioning / "datasources").glob("*.yml"))
        for d in yaml.safe_load(p.read_text())["datasources"]
    ]  # fmt: skip
    uids = {d["uid"] for d in sources}
    for d in sources:
        host = httpx.URL(d["url"]).host
        if host not in compose["services"] or httpx.URL(d["url"]).port != 9090:
            problems.append(f"datasource {d['uid']}: {d['url']} is not the prometheus service")

    def used(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and "uid" in ds and ds.get("type") != "grafana":
                yield ds["uid"]
            for value in node.values():
                yield from used(value)
        elif isinstance(node, list):
            for value in node:
                yield from used(value)

    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for uid in set(used(json.loads(path.read_text()))) - uids:
            problems.append(f"{path.name} uses datasource uid {uid!r}, which is not provisioned")
    return problems


def test_grafana_provisions_what_the_dashboards_use_where_compose_mounts_it(
    tmp_path: Path,
) -> None:
    compose = load_compose()
    provisioning = DEPLOY / "grafana" / "provisioning"
    assert grafana_problems(compose, provisioning) == []
    assert len(list((DEPLOY / "grafana" / "dashboards").glob("*.json"))) == 3
    env = service_env(compose["services"]["grafana"], env_example())
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == env_example()["GRAFANA_ADMIN_PASSWORD"]
    # broken: a datasource uid the dashboards do not use, and the dashboards mounted elsewhere
    broken = tmp_path / "provisioning"
    shutil.copytree(provisioning, broken)
    source = broken / "datasources" / "prometheus.yml"
    source.write_text(source.read_text().replace("uid: prometheus", "uid: prom"))
    moved = copy.deepcopy(compose)
    moved["services"]["grafana"]["volumes"] = [
        v.replace("/etc/grafana/provisioning", f"/etc/grafana/{broken.name}").replace(
            "dashboards/k2", "dashboards/other"
        )
        for v in moved["services"]["grafana"]["volumes"]
    ]
    problems = grafana_problems(moved, broken)
    assert any("'prometheus'" in p for p in problems), problems
    assert any("provider k2" in p for p in problems), problems
