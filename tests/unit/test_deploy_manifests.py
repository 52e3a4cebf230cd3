"""Static checks of the deployment manifests in deploy/compose and deploy/k8s.

Nothing is built or started: the YAML, Dockerfiles and SQL are parsed and compared
with the service table below and with the settings classes of the code.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import secrets
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "deploy" / "compose"
K8S_DIR = REPO / "deploy" / "k8s"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"


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
KAFKA_BROKERS = ("kafka-1", "kafka-2", "kafka-3")
INFRASTRUCTURE = (*KAFKA_BROKERS, "postgres")
MONITORING = ("prometheus", "grafana")
# What an operator supplies: compose's required variables; k8s placeholders are replaced by real values.
OPERATOR_ENV = {"POSTGRES_PASSWORD": "operator-password", "BATON_JWT_SECRET": secrets.token_urlsafe(48)}

each_service = pytest.mark.parametrize("svc", SERVICES, ids=lambda svc: svc.name)
each_broker = pytest.mark.parametrize("broker", KAFKA_BROKERS)
each_manifest = pytest.mark.parametrize("manifest", ["compose", "k8s"])


# --- loading -----------------------------------------------------------------


@cache
def compose() -> dict:
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())


def compose_env(service: str) -> dict[str, str]:
    env = compose()["services"][service].get("environment", {})
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def interpolate(value: str, given: Mapping[str, str]) -> str:
    """Fills in compose's ${NAME}, ${NAME:-default} and ${NAME:?error} from ``given``."""

    def fill(match: re.Match[str]) -> str:
        name, operator, argument = match.group("name", "operator", "argument")
        if operator == ":?":
            assert given.get(name), f"compose requires {name}"
        if operator == ":-":
            return given.get(name) or argument
        return given.get(name, "")

    return re.sub(r"\$\{(?P<name>\w+)(?:(?P<operator>:[-?])(?P<argument>[^}]*))?\}", fill, value)


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` as {NAME: (host, port)}; the host is empty when the listener binds all."""
    found = {}
    for listener in value.split(","):
        name, _, endpoint = listener.partition("://")
        host, _, port = endpoint.rpartition(":")
        found[name] = (host, int(port))
    return found


def quorum_voters(broker: str) -> dict[int, tuple[str, int]]:
    """``KAFKA_CONTROLLER_QUORUM_VOTERS`` (``id@host:port,...``) as {node id: (host, port)}."""
    voters = {}
    for voter in compose_env(broker)["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","):
        node_id, _, endpoint = voter.partition("@")
        host, _, port = endpoint.rpartition(":")
        voters[int(node_id)] = (host, int(port))
    return voters


def advertised_endpoint(broker: str) -> str:
    """Where clients reach a broker: its advertised inter-broker listener, as ``host:port``."""
    env = compose_env(broker)
    host, port = listeners(env["KAFKA_ADVERTISED_LISTENERS"])[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    return f"{host}:{port}"


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


def deployed_env(manifest: str, svc: Service) -> dict[str, str]:
    """The environment a service's container starts with, as an operator would deploy it.

    The image's ENV first, then compose's environment (interpolated), or the Deployment's
    envFrom sources in order and its env; k8s placeholders get real values.
    """
    env = dockerfile_env(svc)
    if manifest == "compose":
        env |= {name: interpolate(value, OPERATOR_ENV) for name, value in compose_env(svc.name).items()}
        return env
    container = container_of(svc)
    for source in container.get("envFrom", []):
        ((ref_kind, ref),) = source.items()
        kind = {"configMapRef": "ConfigMap", "secretRef": "Secret"}[ref_kind]
        obj = k8s_objects()[kind, ref["name"]]
        values = {**obj.get("data", {}), **obj.get("stringData", {})}
        env |= {name: str(value).replace("REPLACE_ME", secrets.token_urlsafe(48)) for name, value in values.items()}
    env |= {item["name"]: item["value"] for item in container.get("env", [])}
    return env


def settings_class(svc: Service) -> type[BaseSettings]:
    """The settings class the service's own settings module defines."""
    module = importlib.import_module(f"{svc.package}.settings")
    (cls,) = (
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, BaseSettings) and obj.__module__ == module.__name__
    )
    return cls


def readme_setting_defaults(readme: Path) -> dict[str, str]:
    """The ``| `BATON_X` | `default` |`` rows of a README's settings table."""
    return dict(re.findall(r"^\| `(BATON_\w+)` \| `([^`]+)`", readme.read_text(), flags=re.MULTILINE))


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


def test_compose_runs_the_four_services_plus_kafka_postgres_prometheus_and_grafana():
    assert set(compose()["services"]) == {svc.name for svc in SERVICES} | set(INFRASTRUCTURE) | set(MONITORING)


def test_compose_uses_official_kafka_4_and_postgres_16_images():
    services = compose()["services"]
    for broker in KAFKA_BROKERS:
        assert re.fullmatch(r"apache/kafka:4(\.\d+)*", services[broker]["image"])
    assert len({services[broker]["image"] for broker in KAFKA_BROKERS}) == 1
    assert services["postgres"]["image"] == "postgres:16"


def test_compose_runs_three_kafka_nodes_whose_quorum_voters_name_all_three():
    envs = {broker: compose_env(broker) for broker in KAFKA_BROKERS}
    node_ids = {broker: int(env["KAFKA_NODE_ID"]) for broker, env in envs.items()}
    assert len(set(node_ids.values())) == len(KAFKA_BROKERS)
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    for broker, env in envs.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        controller_port = listeners(env["KAFKA_LISTENERS"])[env["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]
        assert quorum_voters(broker) == {node_ids[voter]: (voter, controller_port) for voter in KAFKA_BROKERS}, (
            f"{broker}'s voters are not the three nodes at their controller listeners"
        )
        assert advertised_endpoint(broker).partition(":")[0] == broker


@each_broker
def test_every_compose_broker_replicates_every_topic_three_times_and_acknowledges_on_two(broker):
    env = compose_env(broker)
    assert {
        "KAFKA_DEFAULT_REPLICATION_FACTOR": "3",
        "KAFKA_MIN_INSYNC_REPLICAS": "2",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "3",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "2",
        # Quoted in YAML: an unquoted false would reach the container as "False" or be refused.
        "KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE": "false",
    }.items() <= env.items()
    replication = [int(value) for name, value in env.items() if name.endswith("REPLICATION_FACTOR")]
    assert max(replication) <= len(KAFKA_BROKERS)


def test_every_compose_broker_keeps_its_log_in_a_volume_of_its_own():
    mounts = {}
    for broker in KAFKA_BROKERS:
        log_dir = compose_env(broker)["KAFKA_LOG_DIRS"]
        (volume,) = (
            v.partition(":")[0] for v in compose()["services"][broker]["volumes"] if v.split(":")[1] == log_dir
        )
        mounts[broker] = volume
    assert len(set(mounts.values())) == len(KAFKA_BROKERS)
    assert set(mounts.values()) <= set(compose()["volumes"])


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
    bootstrap = env["BATON_KAFKA_BOOTSTRAP_SERVERS"].split(",")
    assert sorted(bootstrap) == sorted(advertised_endpoint(broker) for broker in KAFKA_BROKERS)
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


def mounts(service: str) -> dict[str, Path]:
    """A compose service's bind mounts as {path in the container: path on the host}."""
    found = {}
    for volume in compose()["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            found[target] = (COMPOSE_DIR / source).resolve()
    return found


def test_compose_prometheus_loads_the_scrape_config_and_the_alert_rules_it_names():
    prometheus = compose()["services"]["prometheus"]
    command = prometheus["command"]
    (config_flag,) = (arg for arg in command if arg.startswith("--config.file="))
    config_path = config_flag.partition("=")[2]
    mounted = mounts("prometheus")

    assert mounted[config_path] == PROMETHEUS_DIR / "prometheus.yml"
    config = yaml.safe_load(mounted[config_path].read_text())
    for rule_file in config["rule_files"]:
        assert mounted[rule_file] == PROMETHEUS_DIR / "alerts.yml"
    (job,) = config["scrape_configs"]
    (static,) = job["static_configs"]
    assert sorted(static["targets"]) == sorted(f"{svc.name}:{svc.port}" for svc in SERVICES)
    assert all(svc.name in compose()["services"] for svc in SERVICES)
    assert prometheus["ports"] == ["9090:9090"]


def test_compose_grafana_provisions_its_datasource_and_dashboards_from_deploy_grafana():
    grafana = compose()["services"]["grafana"]
    mounted = mounts("grafana")
    provisioning = mounted["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "baton.yml").read_text())["providers"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]

    assert provisioning == GRAFANA_DIR / "provisioning"
    assert mounted[provider["options"]["path"]] == GRAFANA_DIR / "dashboards"
    prometheus_port = compose()["services"]["prometheus"]["ports"][0].split(":")[1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (GRAFANA_DIR / "dashboards" / Path(home).name).is_file()


def test_compose_grafana_admin_password_comes_from_the_environment():
    env = compose_env("grafana")
    assert re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", env["GF_SECURITY_ADMIN_PASSWORD"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GRAFANA_ADMIN_PASSWORD=" in (COMPOSE_DIR / ".env.example").read_text()


@pytest.mark.parametrize("service", MONITORING)
def test_compose_monitoring_images_are_pinned_and_keep_their_data_in_a_volume(service):
    spec = compose()["services"][service]
    image, _, tag = spec["image"].partition(":")
    assert tag and tag != "latest" and re.fullmatch(r"v?\d+\.\d+\.\d+", tag), spec["image"]
    named = {v.split(":")[0] for v in spec["volumes"] if not v.startswith(".")}
    assert named and named <= set(compose()["volumes"])
    assert "healthcheck" in spec


def test_kubernetes_prometheus_config_scrapes_every_baton_pod_on_its_http_port():
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["kubernetes_sd_configs"]
    keeps = {rule["source_labels"][0]: rule["regex"] for rule in job["relabel_configs"] if rule.get("action") == "keep"}

    assert discovery["role"] == "pod"
    assert discovery["namespaces"]["names"] == [kustomization()["namespace"]]
    assert keeps["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"] == "baton"
    assert keeps["__meta_kubernetes_pod_container_port_name"] == "http"
    for svc in SERVICES:
        pod_labels = k8s_objects()["Deployment", svc.name]["spec"]["template"]["metadata"]["labels"]
        assert pod_labels["app.kubernetes.io/part-of"] == "baton"
        assert [p["name"] for p in container_of(svc)["ports"]] == ["http"]
    assert config["rule_files"] == yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())["rule_files"]


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


@each_manifest
@each_service
def test_every_deployed_service_creates_topics_with_three_replicas_and_min_insync_two(manifest, svc, monkeypatch):
    from baton.bus import make_bus
    from baton.bus.kafka import KafkaBus

    env = deployed_env(manifest, svc)
    assert env["BATON_KAFKA_REPLICATION_FACTOR"] == "3"
    assert env["BATON_KAFKA_MIN_INSYNC_REPLICAS"] == "2"
    for name, value in env.items():
        if name.startswith("BATON_"):
            monkeypatch.setenv(name, value)
    settings = settings_class(svc)()  # validation runs here, with the production checks
    assert (settings.env, settings.bus) == ("production", "kafka")
    bus = make_bus(settings)
    assert isinstance(bus, KafkaBus)
    assert (bus.replication_factor, bus.min_insync_replicas) == (3, 2)


@pytest.mark.parametrize("readme", [COMPOSE_DIR / "README.md", K8S_DIR / "README.md"], ids=["compose", "k8s"])
def test_readme_settings_tables_show_the_real_defaults(readme):
    from baton.settings import Settings

    documented = readme_setting_defaults(readme)
    assert {
        "BATON_CONSUMER_BATCH_SIZE",
        "BATON_MAX_EVENT_BYTES",
        "BATON_MAX_BODY_BYTES",
        "BATON_INBOX_RETENTION_DAYS",
        "BATON_LOG_RETENTION_DAYS",
        "BATON_PRUNE_INTERVAL_SECONDS",
    } <= documented.keys()
    for name, default in documented.items():
        field = Settings.model_fields[name.removeprefix("BATON_").lower()]
        assert float(default) == field.default, f"{readme.name}: {name} is documented as {default}"


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
