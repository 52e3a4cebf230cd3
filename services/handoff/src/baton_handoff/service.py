"""Assigning MQLs to reps and recording what sales tools report."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.events import LeadAssigned, LeadQualified, LeadRecycled, LeadStatusChanged, new_id
from baton.outbox import add_event
from baton_handoff.domain import OPEN_STATUSES, Candidate, check_transition, route_round_robin
from baton_handoff.models import Assignment, Rep, RoutingCursor


async def _candidates(session: AsyncSession) -> list[Candidate]:
    open_counts = dict(
        (
            await session.execute(
                select(Assignment.rep_id, func.count())
                .where(Assignment.status.in_(OPEN_STATUSES))
                .group_by(Assignment.rep_id)
            )
        ).all()
    )
    reps = (await session.scalars(select(Rep))).all()
    return [
        Candidate(
            rep_id=rep.rep_id,
            status=rep.status,
            capacity=rep.capacity,
            open_assignments=open_counts.get(rep.rep_id, 0),
            ooo_until=rep.ooo_until,
        )
        for rep in reps
    ]


async def assign_lead(
    session: AsyncSession,
    *,
    qualified: LeadQualified,
    now: datetime,
    accept_within: timedelta,
    touch_within: timedelta,
) -> Assignment | None:
    """Hands an MQL to the next eligible rep, or recycles it when nobody can take it.

    The routing cursor's row is locked for the rest of the transaction, so concurrent routings
    (several replicas included) see each other's assignments and no rep goes over capacity.
    """
    already_open = await session.scalar(
        select(Assignment.id).where(Assignment.lead_id == qualified.lead_id, Assignment.status.in_(OPEN_STATUSES))
    )
    if already_open is not None:
        return None
    cursor = await session.scalar(select(RoutingCursor).where(RoutingCursor.name == "default").with_for_update())
    if cursor is None:
        cursor = RoutingCursor(name="default", last_rep_id=None)
        session.add(cursor)
    decision = route_round_robin(await _candidates(session), last_rep_id=cursor.last_rep_id, now=now)
    if decision.chosen is None:
        add_event(
            session,
            LeadRecycled(
                lead_id=qualified.lead_id,
                reason="no eligible rep: "
                + (", ".join(f"{rep_id} {why}" for rep_id, why in decision.skipped.items()) or "no reps"),
            ),
        )
        return None
    rep = await session.get(Rep, decision.chosen)
    assert rep is not None
    cursor.last_rep_id = rep.rep_id
    assignment = Assignment(
        id=new_id(),
        lead_id=qualified.lead_id,
        rep_id=rep.rep_id,
        team=rep.team,
        rule=decision.rule,
        attempt=1,
        status="assigned",
        lead=qualified.lead.model_dump(mode="json"),
        decision=decision.as_dict(),
        accept_due_at=now + accept_within,
        touch_due_at=now + touch_within,
        created_at=now,
        updated_at=now,
    )
    session.add(assignment)
    add_event(
        session,
        LeadAssigned(
            lead_id=assignment.lead_id,
            assignment_id=assignment.id,
            rep_id=assignment.rep_id,
            team=assignment.team,
            source=assignment.lead.get("source"),
            campaign=assignment.lead.get("campaign"),
            rule=assignment.rule,
            attempt=assignment.attempt,
            accept_due_at=assignment.accept_due_at,
            touch_due_at=assignment.touch_due_at,
        ),
    )
    return assignment


async def record_status(
    session: AsyncSession,
    *,
    assignment: Assignment,
    status: str,
    reason: str | None,
    amount: Decimal | None,
    occurred_at: datetime,
    now: datetime,
) -> None:
    """Moves an assignment to a new status and publishes lead.status_changed; illegal moves raise Conflict."""
    check_transition(assignment.status, status)
    assignment.status = status
    assignment.reason = reason
    if amount is not None:
        assignment.amount = float(amount)
    assignment.updated_at = now
    add_event(
        session,
        LeadStatusChanged(
            lead_id=assignment.lead_id,
            assignment_id=assignment.id,
            rep_id=assignment.rep_id,
            team=assignment.team,
            source=assignment.lead.get("source"),
            campaign=assignment.lead.get("campaign"),
            status=status,
            reason=reason,
            amount=amount,
            occurred_at=occurred_at,
        ),
    )
