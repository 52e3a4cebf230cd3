"""scoring's response bodies."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field

from baton.events import FitGrade
from baton_scoring.calibration import CalibrationRow, ThresholdSuggestion
from baton_scoring.model import ScoringModel
from baton_scoring.simulate import SimulationCounts


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


class SimulationCountsOut(BaseModel):
    """How many leads a proposal changes, and how."""

    leads: int
    grade_changed: int
    grade_up: int
    grade_down: int
    mql_before: int
    mql_after: int
    newly_mql: int
    no_longer_mql: int


class SimulationGroupOut(BaseModel):
    """The counts for one source and campaign (both null in the total)."""

    source: str | None
    campaign: str | None
    counts: SimulationCountsOut

    @classmethod
    def of(cls, source: str | None, campaign: str | None, counts: SimulationCounts) -> SimulationGroupOut:
        """Builds the body from the simulation's counts."""
        return cls(source=source, campaign=campaign, counts=SimulationCountsOut(**asdict(counts)))


class SimulationOut(BaseModel):
    """A proposal replayed beside the model in force over the leads received since ``since``."""

    current_version: int
    days: int
    since: datetime
    total: SimulationGroupOut
    groups: list[SimulationGroupOut]


class CalibrationRowOut(BaseModel):
    """What sales did with the MQLs of one score band and grade."""

    band_low: int
    band_high: int
    grade: FitGrade
    handed_off: int
    pending: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    qualified: int
    won: int
    accept_rate: float | None

    @classmethod
    def of(cls, row: CalibrationRow) -> CalibrationRowOut:
        """Builds the body from a tallied row."""
        return cls(**asdict(row), accept_rate=row.accept_rate)


class SuggestionOut(BaseModel):
    """A suggested MQL threshold, or why there is none (too_few_decisions, target_not_reached)."""

    threshold: int | None
    why: str | None
    target_accept_rate: float
    min_decisions: int
    decisions: int
    accepted: int
    accept_rate: float | None

    @classmethod
    def of(cls, suggestion: ThresholdSuggestion) -> SuggestionOut:
        """Builds the body from the suggestion."""
        return cls(**asdict(suggestion), accept_rate=suggestion.accept_rate)


class CalibrationOut(BaseModel):
    """Calibration over the MQLs qualified since ``since``."""

    since: datetime
    band_width: int
    rows: list[CalibrationRowOut]
    suggestion: SuggestionOut
