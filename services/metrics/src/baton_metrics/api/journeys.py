"""GET /v1/leads/{lead_id}/journey."""

from __future__ import annotations

from fastapi import APIRouter

from baton.errors import NotFound
from baton.web import MetricsReaderDep, SessionDep
from baton_metrics.schemas import Journey, JourneyStepOut
from baton_metrics.service import journey_of

router = APIRouter(prefix="/v1/leads", tags=["journeys"])


@router.get("/{lead_id}/journey")
async def get_journey(lead_id: str, session: SessionDep, principal: MetricsReaderDep) -> Journey:
    """Every event of one lead in the order it happened, with the time since the step before.

    A rep token sees the journey of a lead it was assigned, a team-lead token of a lead its team was.
    """
    steps = await journey_of(session, lead_id=lead_id)
    visible = (principal.rep_id is None or any(step.rep_id == principal.rep_id for step in steps)) and (
        principal.team is None or any(step.team == principal.team for step in steps)
    )
    if not steps or not visible:
        raise NotFound(f"no journey for lead {lead_id}")
    out: list[JourneyStepOut] = []
    for previous, step in zip([None, *steps], steps, strict=False):
        since = None if previous is None else (step.occurred_at - previous.occurred_at).total_seconds()
        out.append(
            JourneyStepOut(
                event_type=step.event_type, occurred_at=step.occurred_at, seconds_since_previous=since, facts=step.facts
            )
        )
    return Journey(lead_id=lead_id, steps=out)
