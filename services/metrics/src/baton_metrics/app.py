"""metrics' app factory: ``uvicorn --factory baton_metrics.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

from baton.events import Clock, utcnow
from baton.runtime import ServiceSpec
from baton.web import create_service_app
from baton_metrics.api import dashboard, journeys, kpis, sla, stream, targets, trends
from baton_metrics.changes import ReadModelChanges
from baton_metrics.consumers import HANDLERS
from baton_metrics.settings import MetricsSettings

SPEC = ServiceSpec(
    name="metrics",
    database="baton_metrics",
    migrations="baton_metrics:migrations",
    consumers={"metrics": HANDLERS},
)


def create_app(settings: MetricsSettings | None = None, *, clock: Clock = utcnow) -> FastAPI:
    """Builds the metrics app."""
    settings = settings or MetricsSettings()
    changes = ReadModelChanges()
    app = create_service_app(
        changes.watching(SPEC),
        settings,
        [kpis.router, sla.router, journeys.router, targets.router, trends.router, stream.router, dashboard.router],
        description=(
            "Running KPI totals for marketing and sales, exactly once per event: funnel, live SLA board, "
            "lead journeys and Baton's own pipeline clock."
        ),
        clock=clock,
    )
    app.state.read_model_changes = changes
    return app
