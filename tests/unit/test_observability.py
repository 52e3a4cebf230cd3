"""The metrics every service shares, as GET /metrics serves them, and the monitoring files in deploy/ that use them."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.consumer import EventConsumer, Incoming, handlers
from baton.db import migrate
from baton.events import LEADS_INGESTED, LEADS_SCORED, CloudEvent, LeadReceived
from baton.outbox import add_event
from baton.runtime import ServiceRuntime, ServiceSpec
from baton.settings import Settings
from baton_handoff.app import create_app as create_handoff_app
from baton_handoff.settings import HandoffSettings
from baton_lead_ingest.app import create_app as create_ingest_app
from baton_lead_ingest.settings import IngestSettings
from baton_metrics.app import create_app as create_metrics_app
from baton_metrics.settings import MetricsSettings
from baton_scoring.app import create_app as create_scoring_app
from baton_scoring.settings import ScoringSettings
from tests.unit.conftest import READ_TIMEOUT_SECONDS

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"

SHARED_FAMILIES = {
    "baton_consumer_events": "counter",
    "baton_consumer_batch_seconds": "histogram",
    "baton_consumer_lag_records": "gauge",
    "baton_dlq_events": "counter",
    "baton_outbox_backlog_events": "gauge",
    "baton_outbox_published": "counter",
    "baton_ready": "gauge",
    "baton_http_requests": "counter",
    "baton_http_request_duration_seconds": "histogram",
}

SERVICES = [
    pytest.param(create_ingest_app, IngestSettings, id="lead-ingest"),
    pytest.param(create_scoring_app, ScoringSettings, id="scoring"),
    pytest.param(create_handoff_app, HandoffSettings, id="handoff"),
    pytest.param(create_metrics_app, MetricsSettings, id="metrics"),
]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """Families (name → type) and samples ((name, sorted labels) → value) of a text exposition."""
    families: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def exposed() -> Samples:
    """What this process's /metrics would serve now (the registry every service's /metrics reads)."""
    return parse(generate_latest().decode())[1]


async def scrape(create_app: Callable[[Any], FastAPI], settings: Settings) -> tuple[str, ServiceRuntime]:
    """Starts a service in-process, asks /readyz, refreshes its telemetry once and returns its /metrics text."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        runtime: ServiceRuntime = app.state.runtime
        assert (await client.get("/readyz")).status_code == 200
        await runtime.telemetry.refresh()
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return answer.text, runtime


# every service


@pytest.mark.parametrize(("create_app", "settings_class"), SERVICES)
async def test_every_service_serves_the_shared_metrics_in_prometheus_text_format(
    tmp_path: Path, create_app: Callable[[Any], FastAPI], settings_class: type[Settings]
) -> None:
    text, runtime = await scrape(create_app, settings_class(data_dir=tmp_path))

    families, samples = parse(text)
    service = runtime.spec.name
    assert {name: families.get(name) for name in SHARED_FAMILIES} == SHARED_FAMILIES
    assert value(samples, "baton_ready", service=service, check="database") == 1
    assert value(samples, "baton_ready", service=service, check="bus") == 1
    assert ("baton_outbox_backlog_events", (("service", service),)) in samples
    lag = {
        (dict(labels)["group"], dict(labels)["topic"], dict(labels)["partition"])
        for name, labels in samples
        if name == "baton_consumer_lag_records" and dict(labels)["group"] in runtime.spec.consumers
    }
    assert lag == {(group, topic, "0") for group, topics in runtime.telemetry.groups.items() for topic in topics}, (
        "one lag series per group, topic and partition of the embedded log"
    )


async def test_a_stopped_service_leaves_no_lag_series_behind(tmp_path: Path) -> None:
    text, runtime = await scrape(create_scoring_app, ScoringSettings(data_dir=tmp_path))

    def lag_series(samples: Samples) -> set[tuple[tuple[str, str], ...]]:
        return {
            labels
            for name, labels in samples
            if name == "baton_consumer_lag_records" and dict(labels)["group"] in runtime.spec.consumers
        }

    assert lag_series(parse(text)[1])
    assert lag_series(exposed()) == set()


async def test_metric_names_follow_the_prometheus_conventions(tmp_path: Path) -> None:
    text, _ = await scrape(create_scoring_app, ScoringSettings(data_dir=tmp_path))

    families, samples = parse(text)
    baton = {name: kind for name, kind in families.items() if name.startswith("baton_")}
    assert baton
    for name, kind in baton.items():
        if kind == "counter":
            assert all(s.endswith(("_total", "_created")) for s, _ in samples if s.startswith(name + "_")), name
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: a histogram of time in base units"
        if kind == "gauge":
            assert not name.endswith("_total"), name


# consumer lag, events and batches


async def test_embedded_lag_counts_each_topics_backlog_past_the_groups_position(embedded_log: EmbeddedLog) -> None:
    # seq numbers run across topics: interleaving them proves lag is counted per topic, not subtracted.
    await embedded_log.publish(
        [Record(topic=topic, key=f"k{i}", value=b"{}") for i, topic in enumerate([LEADS_INGESTED, LEADS_SCORED] * 3)]
    )
    await embedded_log.publish([Record(topic=LEADS_INGESTED, key="k9", value=b"{}")])

    before = await embedded_log.lag("readers", [LEADS_INGESTED, LEADS_SCORED])

    consumed = asyncio.create_task(embedded_log.consume("readers", [LEADS_INGESTED, LEADS_SCORED], _accept))
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            await embedded_log.idle.wait()  # set once everything read is handled and its position saved
        caught_up = await embedded_log.lag("readers", [LEADS_INGESTED, LEADS_SCORED])
        await embedded_log.publish([Record(topic=LEADS_SCORED, key="k10", value=b"{}")])
        one_more = await embedded_log.lag("readers", [LEADS_INGESTED, LEADS_SCORED])
    finally:
        consumed.cancel()
        await asyncio.gather(consumed, return_exceptions=True)

    assert before == {(LEADS_INGESTED, 0): 4, (LEADS_SCORED, 0): 3}
    assert caught_up == {(LEADS_INGESTED, 0): 0, (LEADS_SCORED, 0): 0}
    assert one_more == {(LEADS_INGESTED, 0): 0, (LEADS_SCORED, 0): 1}
    assert await embedded_log.lag("never-ran", [LEADS_SCORED]) == {(LEADS_SCORED, 0): 4}


async def _accept(_: object) -> None:
    """A consumer that takes every batch."""


def _lead_record(lead: LeadReceived) -> Record:
    return Record.from_event(CloudEvent.wrap(lead, source="/baton/test"))


async def test_a_consumer_groups_lag_events_and_batches_on_metrics_as_it_applies_a_backlog(
    tmp_path: Path, unique_name: str, new_lead: Callable[..., LeadReceived]
) -> None:
    release = asyncio.Event()
    applied: list[str] = []

    async def on_lead_received(event: Incoming[LeadReceived], session: object) -> None:
        await release.wait()
        applied.append(event.data.lead_id)

    group = f"{unique_name}-group"
    spec = ServiceSpec(
        name=unique_name,
        database=unique_name,
        migrations="baton_handoff:migrations",
        consumers={group: handlers(on_lead_received)},
    )
    runtime = ServiceRuntime(spec, Settings(data_dir=tmp_path))
    first, second = _lead_record(new_lead()), _lead_record(new_lead())
    broken = Record(topic=LEADS_INGESTED, key="x", value=b"not json", headers=(("ce_type", b"baton.lead.received.v1"),))
    log = EmbeddedLog(tmp_path / "bus.db")
    await log.start()
    try:
        await log.publish([first, second, first, broken])  # the same event twice, and one that cannot be read
    finally:
        await log.stop()
    lag_series = ("baton_consumer_lag_records", (("group", group), ("partition", "0"), ("topic", LEADS_INGESTED)))

    bus = runtime.bus
    assert isinstance(bus, EmbeddedLog)
    await runtime.start()
    try:
        await runtime.telemetry.refresh()  # the consumer holds the batch: nothing of it is committed
        backlog = exposed()
        release.set()
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            await bus.idle.wait()  # set once the batch is handled and the group's position saved
        await runtime.telemetry.refresh()
        caught_up = exposed()
    finally:
        await runtime.stop()

    assert backlog[lag_series] == 4
    assert caught_up[lag_series] == 0
    assert len(applied) == 2
    assert (
        value(caught_up, "baton_consumer_events_total", group=group, type=LeadReceived.event_type, outcome="applied")
        == 2
    )
    assert (
        value(caught_up, "baton_consumer_events_total", group=group, type=LeadReceived.event_type, outcome="duplicate")
        == 1
    )
    assert (
        value(
            caught_up, "baton_consumer_events_total", group=group, type=LeadReceived.event_type, outcome="dead_lettered"
        )
        == 1
    )
    assert value(caught_up, "baton_dlq_events_total", group=group, topic=LEADS_INGESTED) == 1
    assert value(caught_up, "baton_consumer_batch_seconds_count", group=group) >= 1


async def test_events_are_counted_once_committed_not_per_attempt(
    quiet_runtime: ServiceRuntime, unique_name: str, new_lead: Callable[..., LeadReceived]
) -> None:
    flaky, poisoned, fine = new_lead(), new_lead(), new_lead()
    attempts: list[str] = []

    async def on_lead_received(event: Incoming[LeadReceived], session: object) -> None:
        attempts.append(event.data.lead_id)
        if event.data.lead_id == flaky.lead_id and attempts.count(flaky.lead_id) == 1:
            raise ConnectionError("the database went away for a moment")  # transient: the batch is tried again
        if event.data.lead_id == poisoned.lead_id:
            raise ValueError("this lead breaks the handler every time")

    clean, mixed = f"{unique_name}-clean", f"{unique_name}-mixed"
    for group, leads in ((clean, [flaky, fine]), (mixed, [fine, poisoned])):
        consumer = EventConsumer(
            group=group,
            handlers=handlers(on_lead_received),
            bus=quiet_runtime.bus,
            sessions=quiet_runtime.sessions,
            retry_pause_seconds=0,
        )
        await consumer.on_batch([_lead_record(lead) for lead in leads])
    counted = exposed()

    kind = LeadReceived.event_type
    assert attempts.count(flaky.lead_id) == 2
    assert value(counted, "baton_consumer_events_total", group=clean, type=kind, outcome="applied") == 2
    # The mixed batch failed as a whole, then each event alone: only what committed counts.
    assert value(counted, "baton_consumer_events_total", group=mixed, type=kind, outcome="applied") == 1
    assert value(counted, "baton_consumer_events_total", group=mixed, type=kind, outcome="dead_lettered") == 1
    assert value(counted, "baton_dlq_events_total", group=mixed, topic=LEADS_INGESTED) == 1
    assert value(counted, "baton_consumer_batch_seconds_count", group=clean) == 1
    assert value(counted, "baton_consumer_batch_seconds_count", group=mixed) == 1


# outbox and readiness


@pytest.fixture
async def quiet_runtime(tmp_path: Path, unique_name: str) -> AsyncIterator[ServiceRuntime]:
    """A service's runtime with its database migrated and its bus started, but no relay or consumer running."""
    spec = ServiceSpec(name=unique_name, database=unique_name, migrations="baton_handoff:migrations")
    runtime = ServiceRuntime(spec, Settings(data_dir=tmp_path))
    await runtime.bus.start()
    await migrate(runtime.engine, spec.migrations)
    try:
        yield runtime
    finally:
        await runtime.bus.stop()
        await runtime.engine.dispose()


async def test_outbox_backlog_counts_the_rows_waiting_and_published_counts_what_the_relay_sent(
    quiet_runtime: ServiceRuntime, new_lead: Callable[..., LeadReceived]
) -> None:
    service = quiet_runtime.spec.name
    async with quiet_runtime.sessions() as session, session.begin():
        for _ in range(3):
            add_event(session, new_lead())

    await quiet_runtime.telemetry.refresh()
    waiting = exposed()
    assert await quiet_runtime.relay.publish_pending() == 3
    await quiet_runtime.telemetry.refresh()
    published = exposed()

    assert value(waiting, "baton_outbox_backlog_events", service=service) == 3
    assert value(waiting, "baton_outbox_published_total", service=service) == 0
    assert value(published, "baton_outbox_backlog_events", service=service) == 0
    assert value(published, "baton_outbox_published_total", service=service) == 3


async def test_readiness_gauge_follows_each_check(quiet_runtime: ServiceRuntime) -> None:
    service = quiet_runtime.spec.name

    assert await quiet_runtime.check_readiness() == {"database": True, "bus": True}
    ready = exposed()
    await quiet_runtime.bus.stop()
    assert await quiet_runtime.check_readiness() == {"database": True, "bus": False}
    bus_gone = exposed()

    assert value(ready, "baton_ready", service=service, check="bus") == 1
    assert value(bus_gone, "baton_ready", service=service, check="bus") == 0
    assert value(bus_gone, "baton_ready", service=service, check="database") == 1


# deploy/prometheus and deploy/grafana

PROMQL_WORDS = {
    # functions, aggregations, keywords and modifiers that look like metric names
    "sum", "max", "min", "avg", "count", "rate", "irate", "increase", "delta", "deriv", "by", "without",
    "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
    "histogram_quantile", "clamp_min", "clamp_max", "abs", "absent", "vector", "topk", "bottomk",
    "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "label_replace", "time", "le",
}  # fmt: skip
BUILT_IN = {"up"}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are not functions, keywords or labels."""
    without_strings = re.sub(r'"[^"]*"', '""', expression)
    without_labels = re.sub(r"\{[^}]*\}", "{}", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", without_labels)
    without_ranges = re.sub(r"\[[^\]]*\]", "[]", without_groupings)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", without_ranges))
    return {name for name in names if name not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdw]?|e\d*", name)}


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    expressions: list[str] = []
    for path in sorted(GRAFANA_DIR.rglob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            expressions.extend(target["expr"] for target in panel.get("targets", []))
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query", "")
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", query or "")
            if match:
                expressions.append(match.group(1))
    return expressions


async def every_services_metric_names(tmp_path: Path) -> set[str]:
    """Every sample name the four services' /metrics can serve: counters' _total, histograms' parts, gauges."""
    names: set[str] = set()
    for param in SERVICES:
        create_app, settings_class = param.values
        text, _ = await scrape(create_app, settings_class(data_dir=tmp_path / param.id))  # type: ignore[operator]
        for name, kind in parse(text)[0].items():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
                "summary": ("_count", "_sum"),
            }
            names.update(name + suffix for suffix in suffixes.get(kind, ("",)))
    return names


async def test_alert_rules_and_dashboards_name_only_metrics_the_services_serve(tmp_path: Path) -> None:
    served = await every_services_metric_names(tmp_path) | BUILT_IN
    rules = alert_rules()
    expressions = [rule["expr"] for rule in rules] + dashboard_expressions()

    used = set().union(*(metric_names(expression) for expression in expressions))
    assert len(expressions) > 10
    assert used >= {"baton_consumer_lag_records", "baton_ready", "up", "baton_handoff_sla_breaches_total"}
    assert used - served == set(), f"not served by any service: {sorted(used - served)}"


def test_metric_name_extraction_finds_names_and_skips_functions_labels_and_ranges() -> None:
    expression = (
        'sum by (service, route) (rate(baton_http_requests_total{status=~"5..", route!="up"}[5m])) '
        "/ on (service) group_left max(baton_ready) > 0.5 or absent(up)"
    )

    assert metric_names(expression) == {"baton_http_requests_total", "baton_ready", "up"}


def test_alert_rules_cover_sla_breaches_lag_dead_letters_and_readiness() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}

    reads = {name: metric_names(rule["expr"]) for name, rule in rules.items()}
    for needed in ("baton_handoff_sla_breaches_total", "baton_consumer_lag_records", "baton_dlq_events_total"):
        assert any(needed in names for names in reads.values()), needed
    assert any("up" in names for names in reads.values())
    assert any("baton_ready" in names for names in reads.values())
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_prometheus_scrapes_every_service_on_its_port_in_compose_and_kubernetes() -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {
        target for job in jobs.values() for static in job.get("static_configs", []) for target in static["targets"]
    }

    expected = {"lead-ingest": 8001, "scoring": 8002, "handoff": 8003, "metrics": 8004}
    assert {f"{name}:{port}" for name, port in expected.items()} <= targets
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs.values())
    assert config["rule_files"] and all(Path(f).name == "alerts.yml" for f in config["rule_files"])


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard_folder() -> None:
    datasources = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "baton.yml").read_text())
    dashboards = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))

    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = providers["providers"]
    assert provider["options"]["path"].endswith("/dashboards")
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["targets"], f"{path.name}: {panel['title']} shows nothing"
