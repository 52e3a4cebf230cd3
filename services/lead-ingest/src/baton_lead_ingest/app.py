"""lead-ingest's app factory: ``uvicorn --factory baton_lead_ingest.app:create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI

from baton.runtime import ServiceRuntime, ServiceSpec
from baton.web import create_service_app
from baton_lead_ingest.api import erasure, leads, quarantine, sources, webhooks
from baton_lead_ingest.group_commit import GroupCommit
from baton_lead_ingest.rate_limits import RateLimits
from baton_lead_ingest.secret_box import SecretBox
from baton_lead_ingest.service import Intake, IntakeResult, commit_intakes, forget_old_answers
from baton_lead_ingest.settings import IngestSettings
from baton_lead_ingest.sources import SourceCache

SPEC = ServiceSpec(
    name="lead-ingest",
    database="baton_lead_ingest",
    migrations="baton_lead_ingest:migrations",
    pruners=(forget_old_answers,),
)


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """Builds the lead-ingest app."""
    settings = settings or IngestSettings()
    app = create_service_app(
        SPEC,
        settings,
        [leads.router, erasure.router, sources.router, webhooks.router, quarantine.router],
        description=(
            "Webhook and API intake: verifies and maps vendors' webhooks, validates and normalises leads, merges "
            "duplicates, quarantines what cannot become a lead, publishes lead.received."
        ),
    )
    runtime: ServiceRuntime = app.state.runtime
    app.state.secret_box = SecretBox.from_settings(settings)
    app.state.sources = SourceCache(runtime.sessions, app.state.secret_box, ttl_seconds=settings.source_cache_seconds)
    app.state.rate_limits = RateLimits()
    intake: GroupCommit[Intake, IntakeResult] = GroupCommit(
        partial(commit_intakes, runtime.sessions), max_weight=settings.intake_group_max_leads, name="lead-intake"
    )
    app.state.intake = intake
    # The writer starts once the runtime has migrated the database, and drains before the runtime stops.
    service_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_lifespan(app):
            await intake.start()
            try:
                yield
            finally:
                await intake.stop()

    app.router.lifespan_context = lifespan
    return app
