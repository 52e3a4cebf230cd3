"""A lead's score, its breakdown and its history."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from baton.errors import NotFound
from baton.web import LeadsReaderDep, SessionDep
from baton_scoring.models import LeadScore, ScoreHistory
from baton_scoring.schemas import BreakdownLineOut, LeadScoreOut, ScorePoint

router = APIRouter(prefix="/v1", tags=["scores"])


@router.get("/leads/{lead_id}/score")
async def get_lead_score(lead_id: str, session: SessionDep, _: LeadsReaderDep) -> LeadScoreOut:
    """A lead's current score, the breakdown that explains it, and every score it had before."""
    lead = await session.get(LeadScore, lead_id)
    if lead is None:
        raise NotFound(f"no score for lead {lead_id}")
    history = (
        await session.scalars(select(ScoreHistory).where(ScoreHistory.lead_id == lead_id).order_by(ScoreHistory.id))
    ).all()
    return LeadScoreOut(
        lead_id=lead.lead_id,
        score=lead.score,
        fit_grade=lead.fit_grade,
        engagement=lead.engagement,
        status=lead.status,
        cycle=lead.cycle,
        model_version=lead.model_version,
        breakdown=[BreakdownLineOut.model_validate(line) for line in lead.breakdown],
        scored_at=lead.scored_at,
        qualified_at=lead.qualified_at,
        history=[
            ScorePoint(
                score=h.score,
                fit_grade=h.fit_grade,
                engagement=h.engagement,
                model_version=h.model_version,
                scored_at=h.scored_at,
                cause=h.cause,
                breakdown=None if h.breakdown is None else [BreakdownLineOut.model_validate(x) for x in h.breakdown],
            )
            for h in history
        ],
    )
