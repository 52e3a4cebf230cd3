"""The first scoring model and its scorer, as they were before the model became versioned data.

The service does not use them (``baton_scoring.model``, ``engine`` and ``consumers`` do the scoring); they are
the reference that the default model (``model.DEFAULT_MODEL_V2``) is proven against, lead for lead, in the
tests of the engine and the model, and that migration 0001's version 1 was written from."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from baton.events import FitGrade, ScoreLine

GRADES: tuple[FitGrade, ...] = ("A", "B", "C", "D")


class FitRule(BaseModel):
    """Points for a lead attribute: a keyword in a text field, or a numeric band."""

    model_config = ConfigDict(extra="forbid")

    name: str
    attribute: Literal["title", "company_size", "industry", "country", "email_domain"]
    contains_any: list[str] = Field(
        default_factory=list, description="Case-insensitive whole words or phrases (text fields); exact domains."
    )
    min_value: int | None = Field(None, description="Lower bound, inclusive (numeric fields).")
    max_value: int | None = Field(None, description="Upper bound, inclusive (numeric fields).")
    points: int
    disqualifies: bool = False

    def matches(self, value: str | int | None) -> bool:
        """Tells whether a lead's attribute value meets this rule."""
        if value is None:
            return False
        if isinstance(value, int):
            low = self.min_value if self.min_value is not None else -math.inf
            high = self.max_value if self.max_value is not None else math.inf
            return low <= value <= high and not self.contains_any
        text = value.lower()
        if self.attribute == "email_domain":
            return text in {k.lower() for k in self.contains_any}
        return any(re.search(rf"\b{re.escape(keyword.lower())}\b", text) for keyword in self.contains_any)


def _default_grade_thresholds() -> dict[FitGrade, int]:
    return {"A": 40, "B": 25, "C": 10}


class ScoringModel(BaseModel):
    """Everything that decides a score: fit rules, engagement points, hand-raisers and the MQL bar."""

    model_config = ConfigDict(extra="forbid")

    fit_rules: list[FitRule]
    grade_thresholds: dict[FitGrade, int] = Field(
        default_factory=_default_grade_thresholds, description="Minimum fit points per grade; D below."
    )
    engagement_points: dict[str, int] = Field(default_factory=dict)
    engagement_cap: int = 50
    decay_half_life_days: float = 30.0
    hand_raisers: list[str] = Field(default_factory=lambda: ["demo_request"])
    mql_threshold: int = 40
    min_fit_grade: FitGrade = "C"


# The first matching rule of each group (the name before ":") counts; "vice president" is checked before
# "president" so that a VP is not taken for the president.
DEFAULT_MODEL = ScoringModel(
    fit_rules=[
        FitRule(name="title: vice president", attribute="title", contains_any=["vp", "vice president"], points=25),
        FitRule(
            name="title: executive",
            attribute="title",
            contains_any=["chief", "ceo", "cto", "cfo", "cmo", "coo", "founder", "president"],
            points=30,
        ),
        FitRule(name="title: director or head", attribute="title", contains_any=["director", "head of"], points=20),
        FitRule(name="title: manager", attribute="title", contains_any=["manager", "lead"], points=10),
        FitRule(name="company size: enterprise", attribute="company_size", min_value=1000, points=15),
        FitRule(name="company size: mid-market", attribute="company_size", min_value=200, max_value=999, points=10),
        FitRule(name="company size: small business", attribute="company_size", min_value=50, max_value=199, points=5),
        FitRule(
            name="free-mail domain",
            attribute="email_domain",
            contains_any=["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"],
            points=-10,
        ),
    ],
    engagement_points={"email_click": 3, "content_download": 5, "pricing_page_view": 8, "webinar_attended": 10},
)


@dataclass(frozen=True)
class LeadFacts:
    """What scoring knows of a lead."""

    title: str | None
    company_size: int | None
    industry: str | None
    country: str | None
    email_domain: str | None


@dataclass(frozen=True)
class EngagementEvent:
    """One activity that can earn engagement points."""

    type: str
    occurred_at: datetime


@dataclass(frozen=True)
class Score:
    """A lead's score and how it came about."""

    score: int
    fit_grade: FitGrade
    engagement: int
    breakdown: list[ScoreLine]
    disqualified: bool
    hand_raised: bool


def _rule_group(rule: FitRule) -> str:
    return rule.name.split(":", 1)[0]


def fit_grade(model: ScoringModel, fit_points: int) -> FitGrade:
    """Maps fit points to a grade A–D."""
    for grade in GRADES[:-1]:
        if fit_points >= model.grade_thresholds.get(grade, math.inf):
            return grade
    return "D"


def score_lead(model: ScoringModel, facts: LeadFacts, activities: list[EngagementEvent], *, now: datetime) -> Score:
    """Scores a lead: fit points from its attributes, engagement points that decay with age, capped."""
    breakdown: list[ScoreLine] = []
    matched_groups: set[str] = set()
    disqualified = False
    for rule in model.fit_rules:
        group = _rule_group(rule)
        if group in matched_groups or not rule.matches(getattr(facts, rule.attribute)):
            continue
        matched_groups.add(group)
        breakdown.append(ScoreLine(rule=rule.name, points=rule.points))
        disqualified = disqualified or rule.disqualifies
    fit_points = sum(line.points for line in breakdown)
    engagement_raw = 0.0
    for activity in activities:
        points = model.engagement_points.get(activity.type, 0)
        if not points:
            continue
        age_days = max((now - activity.occurred_at).total_seconds() / 86400, 0.0)
        engagement_raw += points * 0.5 ** (age_days / model.decay_half_life_days)
    engagement = min(round(engagement_raw), model.engagement_cap)
    if engagement:
        breakdown.append(ScoreLine(rule="engagement", points=engagement))
    hand_raised = any(activity.type in model.hand_raisers for activity in activities)
    return Score(
        score=fit_points + engagement,
        fit_grade=fit_grade(model, fit_points),
        engagement=engagement,
        breakdown=breakdown,
        disqualified=disqualified,
        hand_raised=hand_raised,
    )


def qualification_reason(model: ScoringModel, score: Score) -> Literal["threshold", "hand-raiser"] | None:
    """Decides whether a score makes an MQL, and why; None means nurture."""
    if score.disqualified:
        return None
    if score.hand_raised:
        return "hand-raiser"
    if score.score >= model.mql_threshold and GRADES.index(score.fit_grade) <= GRADES.index(model.min_fit_grade):
        return "threshold"
    return None
