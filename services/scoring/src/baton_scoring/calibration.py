"""Closing the loop: what sales did with the MQLs of each score band and grade, and a threshold to suggest.

Nothing here changes a model: ``suggest_threshold`` only says which MQL threshold would have kept sales'
accept rate at a target, from the outcomes it is given, or says that the data cannot tell.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from baton.events import FitGrade
from baton_scoring.engine import QualificationReason
from baton_scoring.model import GRADES

DEFAULT_MIN_DECISIONS = 20
"""The fewest accepted-or-rejected MQLs at or above a threshold for it to be suggested."""


@dataclass(frozen=True)
class SalesOutcome:
    """One MQL handed to sales: the score and grade that qualified it, and what sales did with it so far.

    An MQL neither accepted nor rejected yet is pending. ``qualified`` and ``won`` come after an acceptance.
    """

    score: int
    grade: FitGrade
    qualified_by: QualificationReason = "threshold"
    accepted: bool = False
    rejected_reason: str | None = None
    qualified: bool = False
    won: bool = False

    def __post_init__(self) -> None:
        if self.accepted and self.rejected_reason is not None:
            raise ValueError("an MQL handed to sales once is either accepted or rejected, not both")
        if (self.qualified or self.won) and not self.accepted:
            raise ValueError("a lead is qualified or won only after sales accepted it")

    @property
    def decided(self) -> bool:
        """Whether sales accepted or rejected it."""
        return self.accepted or self.rejected_reason is not None


@dataclass(frozen=True)
class CalibrationRow:
    """What sales did with the MQLs of one score band (``band_low`` to ``band_high``, inclusive) and grade."""

    band_low: int
    band_high: int
    grade: FitGrade
    handed_off: int = 0
    pending: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    qualified: int = 0
    won: int = 0

    @property
    def accept_rate(self) -> float | None:
        """Accepted of those sales decided on; None when sales decided on none."""
        decided = self.accepted + self.rejected
        return self.accepted / decided if decided else None


def score_band(score: int, band_width: int) -> int:
    """The lowest score of the band a score falls in: bands are [0, w), [w, 2w), …, and [-w, 0) below zero."""
    return (score // band_width) * band_width


def tally(outcomes: Iterable[SalesOutcome], *, band_width: int = 10) -> list[CalibrationRow]:
    """Counts outcomes per score band and grade, highest band first and A before D within a band."""
    if band_width < 1:
        raise ValueError(f"band width must be at least 1, got {band_width}")
    counts: dict[tuple[int, FitGrade], Counter[str]] = {}
    reasons: dict[tuple[int, FitGrade], Counter[str]] = {}
    for outcome in outcomes:
        key = (score_band(outcome.score, band_width), outcome.grade)
        row = counts.setdefault(key, Counter())
        row["handed_off"] += 1
        row["pending"] += not outcome.decided
        row["accepted"] += outcome.accepted
        row["qualified"] += outcome.qualified
        row["won"] += outcome.won
        if outcome.rejected_reason is not None:
            row["rejected"] += 1
            reasons.setdefault(key, Counter())[outcome.rejected_reason] += 1
    return [
        CalibrationRow(
            band_low=low,
            band_high=low + band_width - 1,
            grade=grade,
            handed_off=row["handed_off"],
            pending=row["pending"],
            accepted=row["accepted"],
            rejected=row["rejected"],
            rejected_by_reason=dict(sorted(reasons.get((low, grade), Counter()).items())),
            qualified=row["qualified"],
            won=row["won"],
        )
        for (low, grade), row in sorted(counts.items(), key=lambda item: (-item[0][0], GRADES.index(item[0][1])))
    ]


@dataclass(frozen=True)
class ThresholdSuggestion:
    """A suggested MQL threshold, or why there is none.

    ``threshold`` is None with ``why`` = ``too_few_decisions`` when fewer than ``min_decisions`` threshold MQLs
    were decided at all, or the target is reached only above a threshold with fewer than that many decisions;
    ``target_not_reached`` when no threshold backed by enough decisions reaches the target and none with
    fewer does either. The other fields describe the suggested threshold (decisions and acceptances at or
    above it), or all decided threshold MQLs when there is no suggestion.
    """

    threshold: int | None
    why: Literal["too_few_decisions", "target_not_reached"] | None
    target_accept_rate: float
    min_decisions: int
    decisions: int
    accepted: int

    @property
    def accept_rate(self) -> float | None:
        """Accepted of decided, at or above the threshold (or over all, without one)."""
        return self.accepted / self.decisions if self.decisions else None


def suggest_threshold(
    outcomes: Sequence[SalesOutcome], target_accept_rate: float, *, min_decisions: int = DEFAULT_MIN_DECISIONS
) -> ThresholdSuggestion:
    """The lowest threshold at which sales accepted at least the target share of the MQLs at or above it.

    Only MQLs that qualified by the threshold and that sales decided on (accepted or rejected) count:
    hand-raisers qualify whatever the threshold, and pending ones say nothing yet. Candidates are the scores
    seen; a candidate needs at least ``min_decisions`` decisions at or above it — otherwise nothing is
    suggested rather than a guess from a handful of leads. Outcomes are only of leads that reached sales, so
    the suggestion never goes below the lowest score seen.
    """
    if not 0 < target_accept_rate <= 1:
        raise ValueError(f"the target accept rate must be above 0 and at most 1, got {target_accept_rate}")
    if min_decisions < 1:
        raise ValueError(f"min_decisions must be at least 1, got {min_decisions}")
    decided = sorted((o.score, o.accepted) for o in outcomes if o.qualified_by == "threshold" and o.decided)
    accepted_total = sum(accepted for _, accepted in decided)
    # Walking the scores upwards: at each distinct score, ``remaining`` decisions are at or above it.
    remaining, accepted_remaining = len(decided), accepted_total
    reached_on_thin_data = False
    index = 0
    while index < len(decided):
        candidate = decided[index][0]
        if accepted_remaining / remaining >= target_accept_rate:
            if remaining >= min_decisions:
                return ThresholdSuggestion(
                    threshold=candidate,
                    why=None,
                    target_accept_rate=target_accept_rate,
                    min_decisions=min_decisions,
                    decisions=remaining,
                    accepted=accepted_remaining,
                )
            reached_on_thin_data = True
            break
        while index < len(decided) and decided[index][0] == candidate:
            remaining -= 1
            accepted_remaining -= decided[index][1]
            index += 1
    thin = len(decided) < min_decisions or reached_on_thin_data
    return ThresholdSuggestion(
        threshold=None,
        why="too_few_decisions" if thin else "target_not_reached",
        target_accept_rate=target_accept_rate,
        min_decisions=min_decisions,
        decisions=len(decided),
        accepted=accepted_total,
    )
