"""Static checks of the deployment manifests in deploy/compose and deploy/k8s.

Nothing is built or started: the YAML, Dockerfiles and SQL are parsed and compared
with the service table below and with the settings classes of the code.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
K8S_DIR = REPO / "deploy" / "k8s"


@dataclass(frozen=True)
class Service:
    # compose service, k8s Deployment/Service, services/<name>, Dockerfile.<name>
    name: str
    package: str
    port: int
    database: str

    @property
    def factory(self) -> str:
        return f"{self.package}.app:create_app"

    @property
    def source_dir(self) -> Path:
        return REPO / "services" / self.name / "src" / self.package

    @property
    def dockerfile(self) -> Path:
        return COMPOSE_DIR / f"Dockerfile.{self.name}"


SERVICES = (
    Service("lead-ingest", "baton_lead_ingest", 8001, "baton_lead_ingest"),
    Service("scoring", "baton_scoring", 8002, "baton_scoring"),
    Service("handoff", "baton_handoff", 8003, "baton_handoff"),
    Service("metrics", "baton_metrics", 8004, "baton_metrics"),
)
INFRASTRUCTURE = ("kafka", "postgres")

each_service = pytest.mark.parametrize("svc", SERVICES, ids=lambda svc: svc.name)


# --- loading -----------------------------------------------------------------


@cache
def compose() -> dict:
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


@cache
def dockerfile(svc: Service) -> tuple[tuple[str, str], ...]:
    """(INSTRUCTION, arguments) pairs; comments dropped, continuation lines joined."""
    text = svc.dockerfile.read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            pairs.append((keyword.upper(), args.strip()))
    return tuple(pairs)


def instructions(svc: Service, keyword: str) -> list[str]:
    return [args for kw, args in dockerfile(svc) if kw == keyword]


def dockerfile_cmd(svc: Service) -> list[str]:
    (cmd,) = instructions(svc, "CMD")
    return json.loads(cmd)  # exec form


def dockerfile_env(svc: Service) -> dict[str, str]:
    pairs = (token.partition("=") for args in instructions(svc, "ENV") for token in shlex.split(args))
    return {key: value for key, _, value in pairs}


@cache
def kustomization() -> dict:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


@cache
def k8s_objects() -> dict[tuple[str, str], dict]:
    """Every object in the kustomization's resources, keyed by (kind, name)."""
    objects = {}
    for resource in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S_DIR / resource).read_text()):
            if doc:
                objects[doc["kind"], doc["metadata"]["name"]] = doc
    return objects


def k8s_objects_of_kind(kind: str) -> list[dict]:
    return [obj for (k, _), obj in k8s_objects().items() if k == kind]


def container_of(svc: Service) -> dict:
    containers = k8s_objects()["Deployment", svc.name]["spec"]["template"]["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == svc.name)
    return container


def resolve_port(container: dict, port: int | str) -> int:
    """A probe or targetPort may name one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = (p["containerPort"] for p in container["ports"] if p.get("name") == port)
    return number


def postgres_init_databases() -> set[str]:
    sql = (COMPOSE_DIR / "postgres-init.sql").read_text()
    return set(re.findall(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", sql, flags=re.IGNORECASE))


def known_setting_env_names() -> set[str]:
    """Environment names accepted by baton.settings.Settings and the service settings.

    Imports must succeed: a missing baton.settings is a failure, not a skip. A service's
    settings module is read when services/<name>/src/<package>/settings.py exists.
    """
    from pydantic_settings import BaseSettings

    shared = importlib.import_module("baton.settings")
    assert shared.Settings.model_config.get("env_prefix") == "BATON_"
    modules = [shared] + [
        importlib.import_module(f"{svc.package}.settings")
        for svc in SERVICES
        if (svc.source_dir / "settings.py").is_file()
    ]
    classes = {
        obj
        for module in modules
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseSettings) and obj is not BaseSettings
    }
    return {(cls.model_config.get("env_prefix", "") + field).upper() for cls in classes for field in cls.model_fields}


def baton_variables_in_manifests() -> dict[str, set[str]]:
    """Every BATON_* name the manifests set, mapped to where it is set."""
    found: dict[str, set[str]] = {}

    def add(names, where):
        for name in names:
            if name.startswith("BATON_"):
                found.setdefault(name, set()).add(where)

    for name in compose()["services"]:
        add(compose_env(name), f"compose.yaml:{name}")
    for svc in SERVICES:
        add(dockerfile_env(svc), svc.dockerfile.name)
        add(
            (e["name"] for e in container_of(svc).get("env", [])),
            f"k8s Deployment {svc.name}",
        )
    for kind in ("ConfigMap", "Secret"):
        for obj in k8s_objects_of_kind(kind):
            keys = {**obj.get("data", {}), **obj.get("stringData", {})}
            add(keys, f"k8s {kind} {obj['metadata']['name']}")
    return found


# --- compose -----------------------------------------------------------------


def test_compose_runs_the_four_services_plus_kafka_and_postgres():
    assert set(compose()["services"]) == {svc.name for svc in SERVICES} | set(INFRASTRUCTURE)


def test_compose_uses_official_kafka_4_and_postgres_16_images():
    services = compose()["services"]
    assert re.fullmatch(r"apache/kafka:4(\.\d+)*", services["kafka"]["image"])
    assert services["postgres"]["image"] == "postgres:16"
    kafka_env = compose_env("kafka")
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


@each_service
def test_every_compose_service_publishes_its_default_port(svc):
    spec = compose()["services"][svc.name]
    assert spec["ports"] == [f"{svc.port}:{svc.port}"]
    assert compose_env(svc.name)["BATON_PORT"] == str(svc.port)


@each_service
def test_every_compose_service_builds_its_own_dockerfile_from_the_repo_root(svc):
    build = compose()["services"][svc.name]["build"]
    assert (COMPOSE_DIR / build["context"]).resolve() == REPO
    assert REPO / build["dockerfile"] == svc.dockerfile
    assert svc.dockerfile.is_file()


@each_service
def test_every_compose_service_uses_kafka_postgres_and_secrets_from_the_environment(
    svc,
):
    env = compose_env(svc.name)
    assert env["BATON_BUS"] == "kafka"
    assert env["BATON_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert re.fullmatch(r"\$\{BATON_JWT_SECRET:\?[^}]+\}", env["BATON_JWT_SECRET"])
    assert re.fullmatch(
        r"postgresql\+asyncpg://baton:\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/\{service\}",
        env["BATON_DATABASE_URL"],
    )


@each_service
def test_every_compose_service_waits_for_healthy_kafka_and_postgres(svc):
    depends_on = compose()["services"][svc.name]["depends_on"]
    for dependency in INFRASTRUCTURE:
        assert depends_on[dependency]["condition"] == "service_healthy"
        assert "healthcheck" in compose()["services"][dependency]


# --- Dockerfiles ---------------------------------------------------------------


@each_service
def test_every_dockerfile_exposes_and_serves_the_service_port(svc):
    assert instructions(svc, "EXPOSE") == [str(svc.port)]
    cmd = dockerfile_cmd(svc)
    assert cmd[cmd.index("--port") + 1] == str(svc.port)
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


@each_service
def test_every_dockerfile_starts_the_service_app_factory_with_uvicorn(svc):
    cmd = dockerfile_cmd(svc)
    assert cmd[0] == "uvicorn" and "--factory" in cmd
    (factory,) = (arg for arg in cmd if re.fullmatch(r"[\w.]+:\w+", arg))
    assert factory == svc.factory
    module, _, _ = factory.partition(":")
    src = REPO / "services" / svc.name / "src"
    module_file = src / f"{module.replace('.', '/')}.py"
    assert module_file.is_file(), f"{factory}: no {module_file.relative_to(REPO)}"


@each_service
def test_every_dockerfile_installs_shared_and_its_service_under_the_lock(svc):
    assert instructions(svc, "FROM") == ["python:3.11-slim"]
    copied = {args.split()[0].rstrip("/") for args in instructions(svc, "COPY")}
    assert copied == {"requirements.lock", "shared", f"services/{svc.name}"}
    assert any(
        f"pip install -c requirements.lock ./shared ./services/{svc.name}" in run for run in instructions(svc, "RUN")
    )


@each_service
def test_every_dockerfile_runs_as_a_non_root_user(svc):
    (user,) = instructions(svc, "USER")
    assert user not in {"root", "0"} and not user.startswith(("root:", "0:"))


@each_service
def test_every_healthcheck_probes_the_service_port(svc):
    (healthcheck,) = instructions(svc, "HEALTHCHECK")
    assert f"127.0.0.1:{svc.port}/healthz" in healthcheck
    compose_test = compose()["services"][svc.name]["healthcheck"]["test"]
    if isinstance(compose_test, list):
        compose_test = " ".join(compose_test)
    assert f"127.0.0.1:{svc.port}/readyz" in compose_test


# --- settings ------------------------------------------------------------------


def test_every_baton_variable_in_the_manifests_is_a_known_setting():
    known = known_setting_env_names()
    unknown = {name: sorted(where) for name, where in baton_variables_in_manifests().items() if name not in known}
    assert not unknown, f"not fields of any settings class: {unknown}"


# --- kubernetes ----------------------------------------------------------------


def test_kustomization_lists_every_k8s_manifest_and_each_listed_file_exists():
    resources = kustomization()["resources"]
    manifests = {
        path.name
        for path in K8S_DIR.iterdir()
        if path.suffix in {".yaml", ".yml"} and path.name != "kustomization.yaml"
    }
    assert sorted(resources) == sorted(manifests)
    assert len(resources) == len(set(resources))
    assert all((K8S_DIR / resource).is_file() for resource in resources)


@each_service
def test_every_deployment_listens_on_the_service_port(svc):
    container = container_of(svc)
    assert [p["containerPort"] for p in container["ports"]] == [svc.port]
    assert {"name": "BATON_PORT", "value": str(svc.port)} in container["env"]


@each_service
def test_every_k8s_service_targets_its_deployment_port(svc):
    service = k8s_objects()["Service", svc.name]["spec"]
    pod_labels = k8s_objects()["Deployment", svc.name]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    (port,) = service["ports"]
    assert port["port"] == svc.port
    assert resolve_port(container_of(svc), port["targetPort"]) == svc.port


@each_service
def test_every_deployment_probes_readyz_and_healthz_on_its_port(svc):
    container = container_of(svc)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert resolve_port(container, http_get["port"]) == svc.port


@each_service
def test_every_deployment_sets_resource_requests_and_limits(svc):
    resources = container_of(svc)["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[bound].keys()


@each_service
def test_every_config_map_and_secret_a_deployment_reads_is_in_the_kustomization(svc):
    generated = {
        generator["name"]
        for key in ("configMapGenerator", "secretGenerator")
        for generator in kustomization().get(key, [])
    }
    for source in container_of(svc)["envFrom"]:
        ((ref_kind, ref),) = source.items()
        kind = {"configMapRef": "ConfigMap", "secretRef": "Secret"}[ref_kind]
        assert (kind, ref["name"]) in k8s_objects() or ref["name"] in generated


def test_k8s_secrets_hold_only_marked_placeholders():
    for secret in k8s_objects_of_kind("Secret"):
        assert "data" not in secret, "keep committed placeholders readable in stringData"
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{secret['metadata']['name']}.{key} looks like a real secret"


# --- databases -----------------------------------------------------------------


def test_postgres_init_creates_one_database_per_service():
    assert postgres_init_databases() == {svc.database for svc in SERVICES}


def test_compose_postgres_runs_the_init_script():
    volumes = compose()["services"]["postgres"]["volumes"]
    assert any(v.startswith("./postgres-init.sql:/docker-entrypoint-initdb.d/") for v in volumes)


def test_every_database_url_selects_the_service_database_by_placeholder():
    urls = [compose_env(svc.name)["BATON_DATABASE_URL"] for svc in SERVICES]
    urls += [
        secret["stringData"]["BATON_DATABASE_URL"]
        for secret in k8s_objects_of_kind("Secret")
        if "BATON_DATABASE_URL" in secret.get("stringData", {})
    ]
    assert len(urls) > len(SERVICES)
    for url in urls:
        assert url.startswith("postgresql+asyncpg://")
        assert url.endswith("/{service}")
