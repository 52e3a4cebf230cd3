"""lead-ingest's app factory: ``uvicorn --factory baton_lead_ingest.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

from baton.runtime import ServiceSpec
from baton.web import create_service_app
from baton_lead_ingest.api import leads
from baton_lead_ingest.settings import IngestSettings

SPEC = ServiceSpec(name="lead-ingest", database="baton_lead_ingest", migrations="baton_lead_ingest:migrations")


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """Builds the lead-ingest app."""
    settings = settings or IngestSettings()
    return create_service_app(
        SPEC,
        settings,
        [leads.router],
        description="Webhook and API intake: validates leads, merges duplicates, publishes lead.received.",
    )
