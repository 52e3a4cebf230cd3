"""Calibration: what sales did per score band and grade, and the threshold that would have met an accept rate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.events import FitGrade
from baton_scoring.calibration import (
    CalibrationRow,
    SalesOutcome,
    score_band,
    suggest_threshold,
    tally,
)


def accepted(score: int, grade: FitGrade = "B", *, qualified: bool = False, won: bool = False) -> SalesOutcome:
    return SalesOutcome(score=score, grade=grade, accepted=True, qualified=qualified, won=won)


def rejected(score: int, reason: str = "bad fit", grade: FitGrade = "B") -> SalesOutcome:
    return SalesOutcome(score=score, grade=grade, rejected_reason=reason)


def pending(score: int, grade: FitGrade = "B") -> SalesOutcome:
    return SalesOutcome(score=score, grade=grade)


# --- the tally ---------------------------------------------------------------------------------------------


def test_outcomes_are_tallied_per_band_and_grade_with_rejections_by_reason() -> None:
    outcomes = [
        accepted(42, "A", qualified=True, won=True),
        accepted(49, "A", qualified=True),
        rejected(45, "no budget", "A"),
        rejected(41, "student", "A"),
        rejected(40, "no budget", "A"),
        pending(48, "A"),
        accepted(44, "C"),
        rejected(55, "competitor", "B"),
    ]

    rows = tally(outcomes, band_width=10)

    assert rows == [
        CalibrationRow(
            band_low=50, band_high=59, grade="B", handed_off=1, rejected=1, rejected_by_reason={"competitor": 1}
        ),
        CalibrationRow(
            band_low=40,
            band_high=49,
            grade="A",
            handed_off=6,
            pending=1,
            accepted=2,
            rejected=3,
            rejected_by_reason={"no budget": 2, "student": 1},
            qualified=2,
            won=1,
        ),
        CalibrationRow(band_low=40, band_high=49, grade="C", handed_off=1, accepted=1),
    ]
    assert rows[1].accept_rate == 2 / 5
    assert rows[0].accept_rate == 0


def test_a_band_where_sales_decided_nothing_has_no_accept_rate() -> None:
    assert tally([pending(12)])[0].accept_rate is None


@pytest.mark.parametrize(
    ("score", "width", "low"), [(0, 10, 0), (9, 10, 0), (10, 10, 10), (-1, 10, -10), (-10, 10, -10), (57, 25, 50)]
)
def test_a_score_falls_in_the_band_starting_at_its_multiple_of_the_width(score: int, width: int, low: int) -> None:
    assert score_band(score, width) == low


def test_the_band_width_is_configurable() -> None:
    rows = tally([accepted(3), accepted(7), accepted(12)], band_width=5)

    assert [(r.band_low, r.band_high, r.handed_off) for r in rows] == [(10, 14, 1), (5, 9, 1), (0, 4, 1)]


def test_a_band_width_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="band width"):
        tally([], band_width=0)


def test_an_outcome_cannot_be_both_accepted_and_rejected_nor_won_without_acceptance() -> None:
    with pytest.raises(ValueError, match="accepted or rejected"):
        SalesOutcome(score=50, grade="A", accepted=True, rejected_reason="spam")
    with pytest.raises(ValueError, match="after sales accepted"):
        SalesOutcome(score=50, grade="A", won=True)


# --- the suggested threshold -------------------------------------------------------------------------------


def test_the_lowest_threshold_meeting_the_target_is_suggested() -> None:
    # Below 50 sales rejects most; from 50 up it accepts 8 of 10; from 46 up, 9 of 12.
    outcomes = [rejected(s) for s in (40, 41, 42, 43, 44, 45, 47)] + [accepted(46)]
    outcomes += [accepted(s) for s in (50, 52, 54, 56, 58, 60, 62, 64)] + [rejected(51), rejected(53)]

    suggestion = suggest_threshold(outcomes, 0.8, min_decisions=10)

    assert suggestion.threshold == 50
    assert suggestion.why is None
    assert (suggestion.decisions, suggestion.accepted, suggestion.accept_rate) == (10, 8, 0.8)


def test_a_rate_exactly_at_the_target_is_enough_and_one_short_is_not() -> None:
    outcomes = [accepted(60)] * 7 + [rejected(60)] * 3

    assert suggest_threshold(outcomes, 0.7, min_decisions=10).threshold == 60
    assert suggest_threshold(outcomes, 0.71, min_decisions=10).threshold is None


def test_hand_raisers_and_pending_leads_do_not_move_the_suggestion() -> None:
    outcomes = [accepted(50)] * 9 + [rejected(50)]
    noise = [SalesOutcome(score=5, grade="D", qualified_by="hand-raiser", rejected_reason="no budget")] * 50
    noise += [pending(20)] * 50

    assert suggest_threshold(outcomes + noise, 0.9, min_decisions=10) == suggest_threshold(
        outcomes, 0.9, min_decisions=10
    )
    assert suggest_threshold(outcomes + noise, 0.9, min_decisions=10).threshold == 50


def test_too_few_decisions_in_all_suggests_nothing() -> None:
    suggestion = suggest_threshold([accepted(60)] * 19, 0.5)

    assert (suggestion.threshold, suggestion.why) == (None, "too_few_decisions")
    assert (suggestion.decisions, suggestion.accepted, suggestion.min_decisions) == (19, 19, 20)


def test_a_target_met_only_where_decisions_are_few_suggests_nothing() -> None:
    # 30 decisions, the target is reached only at 90, by the top 5.
    outcomes = [rejected(40 + i) for i in range(25)] + [accepted(90 + i) for i in range(5)]

    suggestion = suggest_threshold(outcomes, 0.9, min_decisions=20)

    assert (suggestion.threshold, suggestion.why) == (None, "too_few_decisions")


def test_a_target_met_at_no_threshold_says_so() -> None:
    outcomes = [rejected(40 + i) for i in range(30)] + [accepted(40)] * 5

    suggestion = suggest_threshold(outcomes, 0.5, min_decisions=10)

    assert (suggestion.threshold, suggestion.why) == (None, "target_not_reached")


def test_no_outcomes_suggest_nothing() -> None:
    suggestion = suggest_threshold([], 0.5)

    assert (suggestion.threshold, suggestion.why, suggestion.accept_rate) == (None, "too_few_decisions", None)


@pytest.mark.parametrize("target", [0, -0.1, 1.01])
def test_a_target_outside_zero_to_one_is_refused(target: float) -> None:
    with pytest.raises(ValueError, match="target accept rate"):
        suggest_threshold([], target)


outcomes_strategy = st.lists(
    st.builds(
        lambda score, decision, by: SalesOutcome(
            score=score,
            grade="B",
            qualified_by=by,
            accepted=decision == "accepted",
            rejected_reason="no budget" if decision == "rejected" else None,
        ),
        st.integers(0, 100),
        st.sampled_from(["accepted", "rejected", "pending"]),
        st.sampled_from(["threshold", "threshold", "hand-raiser"]),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(outcomes_strategy, st.floats(0.05, 1.0), st.integers(1, 15))
def test_the_suggestion_is_the_lowest_seen_score_backed_by_enough_decisions_meeting_the_target(
    outcomes: list[SalesOutcome], target: float, min_decisions: int
) -> None:
    decided = [o for o in outcomes if o.qualified_by == "threshold" and o.decided]

    def at_or_above(threshold: int) -> tuple[int, int]:
        chosen = [o for o in decided if o.score >= threshold]
        return len(chosen), sum(o.accepted for o in chosen)

    def meets(threshold: int) -> bool:
        n, yes = at_or_above(threshold)
        return n >= min_decisions and yes / n >= target

    expected = min((o.score for o in decided if meets(o.score)), default=None)

    suggestion = suggest_threshold(outcomes, target, min_decisions=min_decisions)

    assert suggestion.threshold == expected
    if expected is not None:
        assert (suggestion.decisions, suggestion.accepted) == at_or_above(expected)
    else:
        assert suggestion.why in {"too_few_decisions", "target_not_reached"}
