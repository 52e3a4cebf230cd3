"""The assignment lifecycle as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from baton.errors import Conflict
from baton_handoff.domain import (
    LEAD_HOLDING_STATUSES,
    OPEN_STATUSES,
    InvalidReport,
    check_occurred_at,
    check_transition,
    closes,
)

NOW = datetime(2024, 6, 3, 9, 0, tzinfo=UTC)


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


@pytest.mark.parametrize("requested", ["accepted", "rejected", "contacted", "won"])
def test_a_queued_lead_has_no_rep_to_report_on(requested: str) -> None:
    with pytest.raises(Conflict, match=f"queued cannot become {requested}"):
        check_transition("queued", requested)


def test_a_queued_assignment_holds_its_lead_but_no_reps_capacity() -> None:
    assert "queued" in LEAD_HOLDING_STATUSES
    assert "queued" not in OPEN_STATUSES
    assert LEAD_HOLDING_STATUSES - OPEN_STATUSES == {"queued"}


@pytest.mark.parametrize("closed", ["won", "lost", "rejected", "reassigned"])
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
