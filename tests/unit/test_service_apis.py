"""The services' HTTP APIs, driven in-process on SQLite and the embedded log in tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from baton.auth import issue_token
from baton.settings import Settings
from baton_handoff.app import create_app as create_handoff_app
from baton_handoff.settings import HandoffSettings
from baton_lead_ingest.app import create_app as create_ingest_app
from baton_lead_ingest.settings import IngestSettings
from baton_metrics.app import create_app as create_metrics_app
from baton_metrics.settings import MetricsSettings
from baton_scoring.app import create_app as create_scoring_app
from baton_scoring.settings import ScoringSettings

PROBLEM_JSON = "application/problem+json"


@dataclass
class RunningService:
    client: httpx.AsyncClient
    settings: Settings

    def token(self, *scopes: str, rep_id: str | None = None) -> dict[str, str]:
        """An Authorization header with a token this service trusts."""
        token = issue_token(self.settings.signing_secret(), scopes=list(scopes), rep_id=rep_id)
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def running(create_app: Callable[[Any], FastAPI], settings: Settings) -> AsyncIterator[RunningService]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield RunningService(client=client, settings=settings)


# every service

SERVICES = [
    pytest.param(create_ingest_app, IngestSettings, "lead-ingest", id="lead-ingest"),
    pytest.param(create_scoring_app, ScoringSettings, "scoring", id="scoring"),
    pytest.param(create_handoff_app, HandoffSettings, "handoff", id="handoff"),
    pytest.param(create_metrics_app, MetricsSettings, "metrics", id="metrics"),
]


@pytest.mark.parametrize(("create_app", "settings_class", "name"), SERVICES)
async def test_service_is_alive_ready_and_exposes_prometheus_metrics(
    tmp_path: Path, create_app: Callable[[Any], FastAPI], settings_class: type[Settings], name: str
) -> None:
    async with running(create_app, settings_class(data_dir=tmp_path)) as service:
        health = await service.client.get("/healthz")
        ready = await service.client.get("/readyz")
        metrics = await service.client.get("/metrics")

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": True, "bus": True}}
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    counted = {
        (sample.labels["service"], sample.labels["route"], sample.labels["status"])
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "baton_http_requests_total"
    }
    assert (name, "/healthz", "200") in counted
