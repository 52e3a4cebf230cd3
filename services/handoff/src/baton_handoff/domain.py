"""The assignment lifecycle as pure functions (routing itself is ``baton_handoff.routing``)."""

from __future__ import annotations

from datetime import datetime

from baton.errors import Conflict, Unprocessable

OPEN_STATUSES = frozenset({"assigned", "accepted", "contacted", "qualified"})
"""An assignment in one of these is held by its rep and counts against the rep's capacity."""
QUEUED = "queued"
"""An assignment nobody could take yet: no rep, waiting in its team's fallback queue."""
LEAD_HOLDING_STATUSES = OPEN_STATUSES | {QUEUED}
"""An assignment in one of these still holds its lead: a lead has at most one."""
ERASED = "erased"
"""The reason an assignment closed because its person asked to be forgotten."""
# Accepting and rejecting are sales' two answers to a handoff, so each excludes the other whatever
# order they arrive in (and a lead is never counted as both); an accepted lead that goes nowhere is lost.
TRANSITIONS: dict[str, frozenset[str]] = {
    "assigned": frozenset({"accepted", "rejected"}),
    "accepted": frozenset({"contacted", "lost"}),
    "contacted": frozenset({"qualified", "lost"}),
    "qualified": frozenset({"won", "lost"}),
}


def check_transition(current: str, requested: str) -> None:
    """Raises Conflict unless an assignment in ``current`` may move to ``requested``."""
    if requested not in TRANSITIONS.get(current, frozenset()):
        closed = "none until a rep is handed it" if current == QUEUED else "none (it is closed)"
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or closed
        raise Conflict(f"an assignment that is {current} cannot become {requested}; allowed: {allowed}")


class InvalidReport(Unprocessable):
    """What a sales tool reported cannot be true of the assignment, e.g. it happened before the assignment."""

    def __init__(self, detail: str, *, field: str) -> None:
        super().__init__(detail, errors=[{"loc": ["body", field], "msg": detail, "type": "value_error"}])


def check_occurred_at(occurred_at: datetime, *, assigned_at: datetime, now: datetime) -> None:
    """Raises InvalidReport unless ``occurred_at`` lies between the assignment's creation and now."""
    if occurred_at > now:
        raise InvalidReport(f"occurred_at {occurred_at.isoformat()} is in the future", field="occurred_at")
    if occurred_at < assigned_at:
        raise InvalidReport(
            f"occurred_at {occurred_at.isoformat()} is before the lead was assigned ({assigned_at.isoformat()})",
            field="occurred_at",
        )


def closes(current: str, requested: str) -> bool:
    """Tells whether moving from ``current`` to ``requested`` frees the rep's capacity the assignment held."""
    return current in OPEN_STATUSES and requested not in OPEN_STATUSES


def anonymous_reason(status: str, reason: str | None) -> str | None:
    """A status change's reason if it identifies nobody: a rejection's (one of the configured codes) or ``erased``."""
    # Any other reason is a sales rep's free text, which may well name the person.
    return reason if status == "rejected" or reason == ERASED else None
