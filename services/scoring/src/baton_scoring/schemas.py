"""scoring's response bodies."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from baton.events import FitGrade
from baton_scoring.model import ScoringModel


class ModelVersionOut(BaseModel):
    """A version of the scoring model, without its definition."""

    version: int
    created_at: datetime


class ModelOut(ModelVersionOut):
    """A version of the scoring model."""

    model: ScoringModel


class BreakdownLineOut(BaseModel):
    """One rule that fired and what it added."""

    rule: str
    points: float = Field(description="Exact points before the final rounding; 0 for explaining lines.")
    kind: str | None = Field(None, description="fit, engagement, engagement_cap, account or hand_raiser.")
    value: float | None = Field(None, description="An activity type's decayed points before its cap; the account's.")


class ScorePoint(BaseModel):
    """One past score."""

    score: int
    fit_grade: FitGrade
    engagement: int | None = None
    model_version: int
    scored_at: datetime
    cause: str | None = Field(None, description="What rescored the lead: received, updated, activity, rescore.")
    breakdown: list[BreakdownLineOut] | None = None


class LeadScoreOut(BaseModel):
    """A lead's current score, why, and how it got there."""

    lead_id: str
    score: int
    fit_grade: FitGrade
    engagement: int
    status: str
    cycle: int
    model_version: int
    breakdown: list[BreakdownLineOut]
    scored_at: datetime
    qualified_at: datetime | None
    history: list[ScorePoint]
