"""Scoring a lead under a model: fit rules, decaying capped engagement, the account, hand-raisers, the MQL call.

Time: decay is measured from each activity's ``occurred_at`` to ``at``, the time of the event being applied
(the lead's ``received_at``, the activity's ``occurred_at``), never the clock at processing time, so replaying
the same events gives the same scores. An activity later than ``at`` counts as if it happened at ``at``.

Rounding, once: fit points are whole numbers; each activity's points decay to a fraction; a type's sum is
capped, all types' sum is capped, and only that exact total is rounded — to the nearest whole point, ties to
even (Python's ``round``: 2.5 → 2, 3.5 → 4), as the first model did. The score is fit points plus that
rounded engagement. Sums use ``math.fsum``, which is exact, so the order of the activities never matters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from baton.events import FitGrade
from baton_scoring.model import GRADES, ScoringModel, domain_in

SECONDS_PER_DAY: Final = 86_400.0

QualificationReason = Literal["threshold", "hand-raiser"]
LineKind = Literal["fit", "engagement", "engagement_cap", "account", "hand_raiser"]


@dataclass(frozen=True)
class EngagementEvent:
    """One activity of a lead: its type and when it happened."""

    type: str
    occurred_at: datetime


@dataclass(frozen=True)
class BreakdownLine:
    """One reason in a score.

    ``points`` is the exact contribution before the final rounding: whole for fit rules, a fraction for an
    activity type (decayed and capped), negative for the total engagement cap's cut, 0 for the account and
    hand-raiser lines, which explain without adding. ``value`` is, for an activity type, its decayed points
    before its cap; for the account line, the account's engagement.
    """

    rule: str
    kind: LineKind
    points: float
    value: float | None = None


@dataclass(frozen=True)
class ScoreResult:
    """A lead's score under a model and how it came about."""

    score: int
    fit_points: int
    grade: FitGrade
    engagement: int
    engagement_exact: float
    breakdown: tuple[BreakdownLine, ...]
    disqualified: bool
    hand_raised: bool


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment


def decayed(points: float, occurred_at: datetime, at: datetime, half_life_days: float) -> float:
    """Points of an activity seen at ``at``: halved every half-life since it happened, whole if not yet past."""
    age_days = max((_aware(at, "at") - _aware(occurred_at, "occurred_at")).total_seconds() / SECONDS_PER_DAY, 0.0)
    return points * math.pow(0.5, age_days / half_life_days)


def _engagement_lines(
    model: ScoringModel, activities: Iterable[EngagementEvent], at: datetime
) -> tuple[list[BreakdownLine], float]:
    per_type: dict[str, list[float]] = {}
    for activity in activities:
        rule = model.engagement.get(activity.type)
        if rule is None:
            continue
        per_type.setdefault(activity.type, []).append(
            decayed(rule.points, activity.occurred_at, at, model.half_life_days)
        )
    lines: list[BreakdownLine] = []
    for activity_type, rule in model.engagement.items():  # the model's order, whatever the activities' order
        if activity_type not in per_type:
            continue
        uncapped = math.fsum(per_type[activity_type])
        points = uncapped if rule.cap is None else min(uncapped, float(rule.cap))
        lines.append(
            BreakdownLine(rule=f"engagement: {activity_type}", kind="engagement", points=points, value=uncapped)
        )
    total = math.fsum(line.points for line in lines)
    if model.engagement_cap is not None and total > model.engagement_cap:
        cut = float(model.engagement_cap) - total
        lines.append(BreakdownLine(rule="engagement cap", kind="engagement_cap", points=cut))
        total = float(model.engagement_cap)
    return lines, total


def engagement_of(model: ScoringModel, activities: Iterable[EngagementEvent], at: datetime) -> float:
    """A person's engagement at ``at``, exact (decayed, capped per type and in total, not rounded)."""
    return _engagement_lines(model, activities, at)[1]


def account_domain(model: ScoringModel, lead_attributes: Mapping[str, object]) -> str | None:
    """The account a lead belongs to: its e-mail domain, or None for a free-mail domain or no e-mail."""
    domain = email_domain(lead_attributes)
    if domain is None or domain_in(domain, model.free_mail_domains):
        return None
    return domain


ACCOUNT_PRECISION: Final = 6
"""An account's engagement is kept to a millionth of a point, so that sums taken in another order agree."""
_REBASE_HALF_LIVES: Final = 64.0


@dataclass
class AccountEngagement:
    """An account's engagement: each person's engagement as of the last time they were scored, halved every
    half-life since, summed.

    The sum is held as one weight at a reference time (``weight`` is the sum's value at ``reference``), so
    that a person's contribution is added or taken back in constant time, whatever the account's size: a
    contribution of ``points`` as of ``at`` adds ``points * 2 ** ((at - reference) / half-life)``. Exponential
    decay is the same for every contribution, so the weight decays as a whole. The reference moves forward
    when a contribution is far later than it, before the factor grows large.
    """

    half_life_days: float
    reference: datetime | None = None
    weight: float = 0.0
    as_of: datetime | None = None
    """The latest time a contribution was made as of: the account is never read as of an earlier time."""

    def _half_lives(self, frm: datetime, to: datetime) -> float:
        return (_aware(to, "at") - _aware(frm, "reference")).total_seconds() / SECONDS_PER_DAY / self.half_life_days

    def add(self, points: float, at: datetime) -> None:
        """Adds a person's engagement as of ``at`` (negative points take a contribution back)."""
        if self.reference is None:
            self.reference = at
        elif self._half_lives(self.reference, at) > _REBASE_HALF_LIVES:
            self.weight *= math.pow(0.5, self._half_lives(self.reference, at))
            self.reference = at
        self.weight += points * math.pow(2.0, self._half_lives(self.reference, at))
        if self.as_of is None or at > self.as_of:
            self.as_of = at

    def value_at(self, at: datetime) -> float:
        """The sum at ``at``, or at the account's latest contribution if that is later: a person counts with at
        most the engagement they had when last scored, never more."""
        if self.reference is None:
            return 0.0
        moment = at if self.as_of is None or at >= self.as_of else self.as_of
        return self.weight * math.pow(0.5, self._half_lives(self.reference, moment))


def account_value(total: float) -> float:
    """An account's engagement as scored and shown: never below zero, to a millionth of a point."""
    return max(round(total, ACCOUNT_PRECISION), 0.0)


def email_domain(lead_attributes: Mapping[str, object]) -> str | None:
    """The lead's e-mail domain, lower-case: ``email_domain`` if given, else what follows '@' in ``email``."""
    given = lead_attributes.get("email_domain")
    if isinstance(given, str) and given.strip():
        return given.strip().lower()
    email = lead_attributes.get("email")
    if isinstance(email, str) and "@" in email:
        return email.rpartition("@")[2].strip().lower() or None
    return None


def score(
    model: ScoringModel,
    lead_attributes: Mapping[str, object],
    activities: Sequence[EngagementEvent],
    *,
    account_engagement: float | None,
    at: datetime,
) -> ScoreResult:
    """Scores a lead at ``at``: fit rules in order (first match per group), engagement, account, hand-raisers.

    ``account_engagement`` is the account's summed engagement at ``at`` (see ``AccountEngagement``), or None
    for a lead with no account (free mail); then rules on ``account_engagement`` do not match.
    """
    _aware(at, "at")
    values: dict[str, object] = {**lead_attributes, "email_domain": email_domain(lead_attributes)}
    values["account_engagement"] = account_engagement
    breakdown: list[BreakdownLine] = []
    fired_groups: set[str] = set()
    fit_points = 0
    disqualified = False
    for rule in model.fit_rules:
        if rule.group is not None and rule.group in fired_groups:
            continue
        if not rule.matches(values.get(rule.attribute)):
            continue
        if rule.group is not None:
            fired_groups.add(rule.group)
        fit_points += rule.points
        disqualified = disqualified or rule.disqualifies
        breakdown.append(BreakdownLine(rule=rule.name, kind="fit", points=float(rule.points)))
    engagement_lines, engagement_exact = _engagement_lines(model, activities, at)
    breakdown.extend(engagement_lines)
    if account_engagement is not None:
        breakdown.append(BreakdownLine(rule="account engagement", kind="account", points=0.0, value=account_engagement))
    raised = sorted({a.type for a in activities if a.type in model.hand_raisers})
    breakdown.extend(BreakdownLine(rule=f"hand-raiser: {kind}", kind="hand_raiser", points=0.0) for kind in raised)
    engagement = round(engagement_exact)
    return ScoreResult(
        score=fit_points + engagement,
        fit_points=fit_points,
        grade=model.grade_thresholds.grade(fit_points),
        engagement=engagement,
        engagement_exact=engagement_exact,
        breakdown=tuple(breakdown),
        disqualified=disqualified,
        hand_raised=bool(raised),
    )


def qualifies(model: ScoringModel, result: ScoreResult) -> QualificationReason | None:
    """Why a score makes an MQL — a hand-raiser, or the threshold at a good enough grade — or None (nurture).

    A disqualified lead never qualifies, not even as a hand-raiser.
    """
    if result.disqualified:
        return None
    if result.hand_raised:
        return "hand-raiser"
    if meets_bar(model, result.score, result.grade):
        return "threshold"
    return None


def meets_bar(model: ScoringModel, score_points: int, grade: str) -> bool:
    """Whether a score reaches the MQL threshold at a grade of at least the model's minimum."""
    return score_points >= model.mql_threshold and grade in GRADES[: GRADES.index(model.min_grade) + 1]
