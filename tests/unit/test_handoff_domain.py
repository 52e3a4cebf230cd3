"""Routing and the assignment lifecycle as pure functions."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from baton.errors import Conflict
from baton_handoff.domain import (
    Candidate,
    InvalidReport,
    check_occurred_at,
    check_transition,
    closes,
    route_round_robin,
)

NOW = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)


def rep(
    rep_id: str,
    *,
    status: str = "available",
    capacity: int = 10,
    open_assignments: int = 0,
    ooo_until: datetime | None = None,
) -> Candidate:
    return Candidate(
        rep_id=rep_id, status=status, capacity=capacity, open_assignments=open_assignments, ooo_until=ooo_until
    )


@pytest.mark.parametrize(
    ("last_rep_id", "chosen"),
    [(None, "ana"), ("ana", "ben"), ("ben", "cai"), ("cai", "ana"), ("bea", "ben"), ("zoe", "ana")],
)
def test_round_robin_takes_the_next_rep_in_rep_id_order_and_wraps(last_rep_id: str | None, chosen: str) -> None:
    candidates = [rep("cai"), rep("ana"), rep("ben")]

    decision = route_round_robin(candidates, last_rep_id=last_rep_id, now=NOW)

    assert decision.chosen == chosen
    assert decision.candidates == ["ana", "ben", "cai"]
    assert decision.method == "round_robin"


def test_round_robin_skips_unavailable_reps_and_says_why() -> None:
    candidates = [
        rep("a-away", status="away"),
        rep("b-ooo", status="ooo"),
        rep("c-back-later", ooo_until=NOW + timedelta(days=2)),
        rep("d-full", capacity=5, open_assignments=5),
        rep("e-free"),
    ]

    decision = route_round_robin(candidates, last_rep_id=None, now=NOW)

    assert decision.chosen == "e-free"
    assert decision.skipped == {
        "a-away": "away",
        "b-ooo": "out of office",
        "c-back-later": "out of office",
        "d-full": "at capacity (5/5)",
    }


def test_rep_whose_time_off_has_ended_is_eligible_again() -> None:
    decision = route_round_robin([rep("ana", ooo_until=NOW - timedelta(minutes=1))], last_rep_id=None, now=NOW)

    assert decision.chosen == "ana"
    assert decision.skipped == {}


def test_nobody_is_chosen_when_no_rep_is_eligible() -> None:
    candidates = [rep("ana", status="away"), rep("ben", capacity=0), rep("cai", status="ooo")]

    decision = route_round_robin(candidates, last_rep_id="ana", now=NOW)

    assert decision.chosen is None
    assert set(decision.skipped) == {"ana", "ben", "cai"}


def test_nobody_is_chosen_when_there_are_no_reps() -> None:
    decision = route_round_robin([], last_rep_id=None, now=NOW)

    assert decision.chosen is None
    assert decision.as_dict()["candidates"] == []


def test_decision_explains_itself_as_stored() -> None:
    decision = route_round_robin([rep("ana", status="away"), rep("ben")], last_rep_id=None, now=NOW)

    assert decision.as_dict() == {
        "rule": "default",
        "method": "round_robin",
        "candidates": ["ana", "ben"],
        "skipped": [{"rep_id": "ana", "reason": "away"}],
        "chosen": "ben",
    }


def test_a_thousand_routings_over_five_equal_reps_give_each_exactly_two_hundred() -> None:
    candidates = [rep(f"rep-{n}", capacity=10_000) for n in range(5)]
    last_rep_id: str | None = None
    chosen: Counter[str] = Counter()

    for _ in range(1_000):
        decision = route_round_robin(candidates, last_rep_id=last_rep_id, now=NOW)
        assert decision.chosen is not None
        chosen[decision.chosen] += 1
        last_rep_id = decision.chosen

    assert chosen == dict.fromkeys((c.rep_id for c in candidates), 200)


@pytest.mark.parametrize(
    ("current", "requested"),
    [
        ("assigned", "accepted"),
        ("assigned", "rejected"),
        ("accepted", "contacted"),
        ("accepted", "lost"),
        ("contacted", "qualified"),
        ("contacted", "lost"),
        ("qualified", "won"),
        ("qualified", "lost"),
    ],
)
def test_lifecycle_step_is_allowed(current: str, requested: str) -> None:
    check_transition(current, requested)


@pytest.mark.parametrize(
    ("current", "requested"),
    [
        ("assigned", "won"),
        ("assigned", "contacted"),
        ("accepted", "won"),
        ("contacted", "accepted"),
        ("accepted", "rejected"),
        ("rejected", "accepted"),
    ],
)
def test_skipping_or_going_back_in_the_lifecycle_is_a_conflict(current: str, requested: str) -> None:
    with pytest.raises(Conflict, match=f"{current} cannot become {requested}") as caught:
        check_transition(current, requested)

    assert caught.value.status == 409


@pytest.mark.parametrize("closed", ["won", "lost", "rejected"])
@pytest.mark.parametrize("requested", ["accepted", "contacted", "qualified", "won", "lost", "rejected"])
def test_closed_assignment_cannot_change_status(closed: str, requested: str) -> None:
    with pytest.raises(Conflict, match="closed"):
        check_transition(closed, requested)


@pytest.mark.parametrize("occurred_at", [NOW - timedelta(hours=1), NOW - timedelta(minutes=30), NOW])
def test_a_report_may_have_happened_any_time_from_the_assignment_until_now(occurred_at: datetime) -> None:
    check_occurred_at(occurred_at, assigned_at=NOW - timedelta(hours=1), now=NOW)


@pytest.mark.parametrize(
    ("occurred_at", "why"),
    [(NOW + timedelta(microseconds=1), "in the future"), (NOW - timedelta(hours=2), "before the lead was assigned")],
)
def test_a_report_from_the_future_or_before_the_assignment_is_invalid(occurred_at: datetime, why: str) -> None:
    with pytest.raises(InvalidReport, match=why) as caught:
        check_occurred_at(occurred_at, assigned_at=NOW - timedelta(hours=1), now=NOW)

    assert caught.value.status == 422
    assert [error["loc"] for error in caught.value.extensions["errors"]] == [["body", "occurred_at"]]


@pytest.mark.parametrize(
    ("current", "requested", "frees_capacity"),
    [
        ("assigned", "accepted", False),
        ("accepted", "contacted", False),
        ("contacted", "qualified", False),
        ("assigned", "rejected", True),
        ("accepted", "lost", True),
        ("qualified", "won", True),
    ],
)
def test_only_a_move_out_of_the_open_statuses_frees_the_reps_capacity(
    current: str, requested: str, frees_capacity: bool
) -> None:
    assert closes(current, requested) is frees_capacity
