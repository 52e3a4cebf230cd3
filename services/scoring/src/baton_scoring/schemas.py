"""scoring's response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from baton.events import FitGrade, ScoreLine
from baton_scoring.domain import ScoringModel


class ModelOut(BaseModel):
    """A version of the scoring model."""

    version: int
    created_at: datetime
    model: ScoringModel


class ScorePoint(BaseModel):
    """One past score."""

    score: int
    fit_grade: FitGrade
    model_version: int
    scored_at: datetime


class LeadScoreOut(BaseModel):
    """A lead's current score, why, and how it got there."""

    lead_id: str
    score: int
    fit_grade: FitGrade
    engagement: int
    status: str
    model_version: int
    breakdown: list[ScoreLine]
    scored_at: datetime
    qualified_at: datetime | None
    history: list[ScorePoint]
