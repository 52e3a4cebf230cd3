"""handoff's app factory: ``uvicorn --factory baton_handoff.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

from baton.events import Clock, utcnow
from baton.runtime import ServiceSpec
from baton.web import create_service_app
from baton_handoff import service, sla, webhooks
from baton_handoff.api import accounts, assignments, audit, reps, routing_rules
from baton_handoff.api import simulate as simulate_api
from baton_handoff.api import webhooks as webhooks_api
from baton_handoff.consumers import make_handlers
from baton_handoff.observability import refresh_gauges
from baton_handoff.settings import HandoffSettings


def create_app(settings: HandoffSettings | None = None, *, clock: Clock = utcnow) -> FastAPI:
    """Builds the handoff app; ``clock`` tells requests and event handlers the time."""
    settings = settings or HandoffSettings()
    spec = ServiceSpec(
        name="handoff",
        database="baton_handoff",
        migrations="baton_handoff:migrations",
        consumers={"handoff": make_handlers(settings), "handoff-webhooks": webhooks.delivery_handlers()},
        workers=[sla.sla_scheduler, webhooks.deliver_webhooks, refresh_gauges],
        pruners=(webhooks.forget_old_deliveries,),
    )
    app = create_service_app(
        spec,
        settings,
        [
            reps.router,
            accounts.router,
            routing_rules.router,
            simulate_api.router,
            assignments.router,
            audit.router,
            webhooks_api.router,
        ],
        description="Routes MQLs to reps with SLA deadlines and serves the sales tools' API.",
        clock=clock,
    )
    service.configure_routing(app.state.runtime.sessions, settings)
    return app
