"""scoring's app factory: ``uvicorn --factory baton_scoring.app:create_app``."""

from __future__ import annotations

from fastapi import FastAPI

from baton.events import Clock, utcnow
from baton.runtime import ServiceSpec
from baton.web import create_service_app
from baton_scoring.api import model, rescore, scores, whatif
from baton_scoring.consumers import HANDLERS
from baton_scoring.rescore import forget_finished_rescores, rescore_worker
from baton_scoring.settings import ScoringSettings

SPEC = ServiceSpec(
    name="scoring",
    database="baton_scoring",
    migrations="baton_scoring:migrations",
    consumers={"scoring": HANDLERS},
    workers=[rescore_worker],
    pruners=(forget_finished_rescores,),
)


def create_app(settings: ScoringSettings | None = None, *, clock: Clock = utcnow) -> FastAPI:
    """Builds the scoring app; ``clock`` tells requests the time (scores follow the events' own times)."""
    settings = settings or ScoringSettings()
    return create_service_app(
        SPEC,
        settings,
        [model.router, whatif.router, rescore.router, scores.router],
        description="Scores leads with a versioned model and decides which become MQLs.",
        clock=clock,
    )
