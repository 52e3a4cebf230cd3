"""The scoring model and lead scores."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from baton.errors import NotFound
from baton.web import AdminDep, LeadsReaderDep, SessionDep
from baton_scoring.domain import ScoringModel
from baton_scoring.models import LeadScore, ModelVersion, ScoreHistory
from baton_scoring.schemas import LeadScoreOut, ModelOut, ScorePoint

router = APIRouter(prefix="/v1", tags=["scoring"])


@router.get("/model")
async def get_model(session: SessionDep, _: AdminDep) -> ModelOut:
    """The scoring model in force."""
    newest = await session.scalar(select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1))
    if newest is None:
        raise NotFound("no scoring model yet")
    return ModelOut(
        version=newest.version, created_at=newest.created_at, model=ScoringModel.model_validate(newest.definition)
    )


@router.get("/leads/{lead_id}/score")
async def get_lead_score(lead_id: str, session: SessionDep, _: LeadsReaderDep) -> LeadScoreOut:
    """A lead's current score, the breakdown that explains it, and its history."""
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
        model_version=lead.model_version,
        breakdown=lead.breakdown,
        scored_at=lead.scored_at,
        qualified_at=lead.qualified_at,
        history=[
            ScorePoint(score=h.score, fit_grade=h.fit_grade, model_version=h.model_version, scored_at=h.scored_at)
            for h in history
        ],
    )
