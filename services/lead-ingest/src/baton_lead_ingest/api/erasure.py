"""POST /v1/leads/{lead_id}:erase: the right to erasure, started in lead-ingest and carried to every service."""

from __future__ import annotations

from fastapi import APIRouter, status

from baton.web import PROBLEM_JSON, AdminDep, NowDep, SessionDep
from baton_lead_ingest.rate_limits import TokenRateLimit
from baton_lead_ingest.webhooks import LeadErasedAnswer, erase_lead

router = APIRouter(prefix="/v1", tags=["erasure"], dependencies=[TokenRateLimit])


@router.post(
    "/leads/{lead_id}:erase",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=LeadErasedAnswer,
    responses={404: {"description": "No lead has, or had, this id.", "content": {PROBLEM_JSON: {}}}},
)
async def post_erase(lead_id: str, session: SessionDep, _: AdminDep, now: NowDep) -> LeadErasedAnswer:
    """Forgets a person: lead-ingest deletes the lead, its answers and quarantined payloads, and publishes
    `lead.erased` so that scoring, handoff and metrics remove theirs too, keeping only anonymous counts.
    Erasing again answers the same."""
    async with session.begin():
        return await erase_lead(session, lead_id=lead_id, now=now)
