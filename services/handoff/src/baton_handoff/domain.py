"""Routing and the assignment lifecycle as pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from baton.errors import Conflict, Unprocessable

OPEN_STATUSES = frozenset({"assigned", "accepted", "contacted", "qualified"})
"""An assignment in one of these is held by its rep and counts against the rep's capacity."""
QUEUED = "queued"
"""An assignment nobody could take yet: no rep, waiting in its team's fallback queue."""
LEAD_HOLDING_STATUSES = OPEN_STATUSES | {QUEUED}
"""An assignment in one of these still holds its lead: a lead has at most one."""
# Accepting and rejecting are sales' two answers to a handoff, so each excludes the other whatever
# order they arrive in (and a lead is never counted as both); an accepted lead that goes nowhere is lost.
TRANSITIONS: dict[str, frozenset[str]] = {
    "assigned": frozenset({"accepted", "rejected"}),
    "accepted": frozenset({"contacted", "lost"}),
    "contacted": frozenset({"qualified", "lost"}),
    "qualified": frozenset({"won", "lost"}),
}


@dataclass(frozen=True)
class Candidate:
    """A rep as routing sees them."""

    rep_id: str
    status: str
    capacity: int
    open_assignments: int
    ooo_until: datetime | None = None
    team: str | None = None


@dataclass
class RoutingDecision:
    """Why a lead went where it went: the rule, every candidate considered and who was chosen."""

    rule: str
    method: str
    candidates: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    chosen: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The decision as stored and served by ``GET /v1/assignments/{id}/decision``."""
        return {
            "rule": self.rule,
            "method": self.method,
            "candidates": self.candidates,
            "skipped": [{"rep_id": rep_id, "reason": reason} for rep_id, reason in self.skipped.items()],
            "chosen": self.chosen,
        }


def why_ineligible(candidate: Candidate, *, now: datetime) -> str | None:
    """Returns why a rep cannot take a lead now, or None when they can."""
    if candidate.status == "ooo" or (candidate.ooo_until is not None and candidate.ooo_until > now):
        return "out of office"
    if candidate.status == "away":
        return "away"
    if candidate.open_assignments >= candidate.capacity:
        return f"at capacity ({candidate.open_assignments}/{candidate.capacity})"
    return None


def route_round_robin(candidates: list[Candidate], *, last_rep_id: str | None, now: datetime) -> RoutingDecision:
    """Picks the first eligible rep after the last one chosen, in rep-id order, wrapping around."""
    ordered = sorted(candidates, key=lambda c: c.rep_id)
    decision = RoutingDecision(rule="default", method="round_robin", candidates=[c.rep_id for c in ordered])
    start = 0
    if last_rep_id is not None:
        start = next((i for i, c in enumerate(ordered) if c.rep_id > last_rep_id), 0)
    for candidate in ordered[start:] + ordered[:start]:
        reason = why_ineligible(candidate, now=now)
        if reason is None:
            decision.chosen = candidate.rep_id
            break
        decision.skipped[candidate.rep_id] = reason
    return decision


def check_transition(current: str, requested: str) -> None:
    """Raises Conflict unless an assignment in ``current`` may move to ``requested``."""
    if requested not in TRANSITIONS.get(current, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(current, frozenset()))) or "none (it is closed)"
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
