"""Reps, assigning MQLs to them, and recording what sales tools report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import event, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from baton.errors import Conflict, NotFound
from baton.events import LeadAssigned, LeadQualified, LeadRecycled, LeadStatusChanged, new_id
from baton.outbox import add_event
from baton_handoff.domain import (
    OPEN_STATUSES,
    Candidate,
    check_occurred_at,
    check_transition,
    closes,
    route_round_robin,
)
from baton_handoff.models import OPEN_ASSIGNMENT, Assignment, Rep, RepWorkload, RoutingCursor
from baton_handoff.schemas import RepIn, RepPatch

DEFAULT_CURSOR = "default"
_ROUTING_TURN_KEY = "baton_handoff_routing_turn"


# Reps


async def create_rep(session: AsyncSession, *, rep_in: RepIn, now: datetime) -> Rep:
    """Adds a rep; a rep_id already taken raises Conflict."""
    if await session.get(Rep, rep_in.rep_id) is not None:
        raise Conflict(f"rep {rep_in.rep_id} already exists")
    rep = Rep(**rep_in.model_dump(), created_at=now, updated_at=now)
    session.add(rep)
    try:
        await session.flush()
    except IntegrityError as exc:
        # Another request added the same rep_id between the look-up and the insert.
        raise Conflict(f"rep {rep_in.rep_id} already exists") from exc
    # Closing an assignment counts down a row that must be there; a rep added again keeps theirs.
    await session.execute(
        _insert(session)(RepWorkload)
        .values(rep_id=rep.rep_id, open_assignments=0)
        .on_conflict_do_nothing(index_elements=[RepWorkload.rep_id])
    )
    return rep


async def list_reps(session: AsyncSession, *, after: str | None, limit: int) -> Sequence[Rep]:
    """Up to ``limit`` reps in rep_id order, starting after the rep_id ``after``."""
    query = select(Rep).order_by(Rep.rep_id).limit(limit)
    if after:
        query = query.where(Rep.rep_id > after)
    return (await session.scalars(query)).all()


async def get_rep(session: AsyncSession, *, rep_id: str) -> Rep:
    """One rep; an unknown rep_id raises NotFound."""
    rep = await session.get(Rep, rep_id)
    if rep is None:
        raise NotFound(f"no rep {rep_id}")
    return rep


async def update_rep(session: AsyncSession, *, rep_id: str, patch: RepPatch, now: datetime) -> Rep:
    """Applies the fields a PATCH names to a rep."""
    rep = await get_rep(session, rep_id=rep_id)
    for name, value in patch.model_dump(exclude_unset=True).items():
        setattr(rep, name, value)
    rep.updated_at = now
    return rep


async def delete_rep(session: AsyncSession, *, rep_id: str) -> None:
    """Removes a rep; their assignments stay, and so does their count of open ones."""
    await session.delete(await get_rep(session, rep_id=rep_id))


# Routing


@dataclass
class _RoutingTurn:
    """The routing lock held by one transaction, with what it read under it and what it changed.

    While the lock is held only this transaction adds assignments, so the reps and their open counts
    read at its start stay right for every lead it routes once its own assignments are counted in
    (an assignment closed meanwhile only leaves a count too high until the next transaction). The
    cursor and the counts it moved are written once, just before the transaction commits.
    """

    transaction: object
    last_rep_id: str | None
    candidates: dict[str, Candidate]
    opened: Counter[str] = field(default_factory=Counter)


def _insert(session: AsyncSession | Session) -> Any:
    return postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


async def _take_routing_turn(session: AsyncSession) -> _RoutingTurn:
    transaction = session.sync_session.get_transaction()
    turn: _RoutingTurn | None = session.info.get(_ROUTING_TURN_KEY)
    if turn is not None and turn.transaction is transaction:
        return turn
    cursor = select(RoutingCursor.last_rep_id).where(RoutingCursor.name == DEFAULT_CURSOR).with_for_update()
    last_rep_id = (await session.execute(cursor)).one_or_none()
    if last_rep_id is None:
        await session.execute(
            _insert(session)(RoutingCursor)
            .values(name=DEFAULT_CURSOR, last_rep_id=None)
            .on_conflict_do_nothing(index_elements=[RoutingCursor.name])
        )
        last_rep_id = (await session.execute(cursor)).one()
    reps = await session.execute(
        select(Rep.rep_id, Rep.status, Rep.capacity, Rep.ooo_until, Rep.team, RepWorkload.open_assignments)
        .outerjoin(RepWorkload, RepWorkload.rep_id == Rep.rep_id)
        .order_by(Rep.rep_id)
    )
    turn = _RoutingTurn(
        transaction=transaction,
        last_rep_id=last_rep_id[0],
        candidates={
            rep_id: Candidate(
                rep_id=rep_id,
                status=status,
                capacity=capacity,
                open_assignments=open_assignments or 0,
                ooo_until=ooo_until,
                team=team,
            )
            for rep_id, status, capacity, ooo_until, team, open_assignments in reps
        },
    )
    session.info[_ROUTING_TURN_KEY] = turn
    return turn


@event.listens_for(Session, "before_commit")
def _write_routing_turn(session: Session) -> None:
    turn: _RoutingTurn | None = session.info.pop(_ROUTING_TURN_KEY, None)
    if turn is None or turn.transaction is not session.get_transaction() or not turn.opened:
        return
    session.execute(
        update(RoutingCursor)
        .where(RoutingCursor.name == DEFAULT_CURSOR)
        .values(last_rep_id=turn.last_rep_id)
        .execution_options(synchronize_session=False)
    )
    counts = _insert(session)(RepWorkload).values(
        [{"rep_id": rep_id, "open_assignments": n} for rep_id, n in sorted(turn.opened.items())]
    )
    session.execute(
        counts.on_conflict_do_update(
            index_elements=[RepWorkload.rep_id],
            set_={"open_assignments": RepWorkload.open_assignments + counts.excluded.open_assignments},
        )
    )


async def _count_closed(session: AsyncSession, rep_id: str) -> None:
    await session.execute(
        update(RepWorkload)
        .where(RepWorkload.rep_id == rep_id)
        .values(open_assignments=RepWorkload.open_assignments - 1)
        .execution_options(synchronize_session=False)
    )


async def _has_open_assignment(session: AsyncSession, lead_id: str) -> bool:
    found = await session.scalar(
        select(Assignment.seq).where(Assignment.lead_id == lead_id, Assignment.status.in_(OPEN_STATUSES))
    )
    return found is not None


async def assign_lead(
    session: AsyncSession,
    *,
    qualified: LeadQualified,
    now: datetime,
    accept_within: timedelta,
    touch_within: timedelta,
) -> str | None:
    """Hands an MQL to the next eligible rep and returns the assignment's id, or recycles it when nobody can take it.

    The routing cursor's row is locked first and for the rest of the transaction, so concurrent
    routings (several replicas included) see each other's assignments: no lead gets two, no rep
    goes over capacity. Several leads may be routed one after another in one transaction.
    """
    turn = await _take_routing_turn(session)
    decision = route_round_robin(list(turn.candidates.values()), last_rep_id=turn.last_rep_id, now=now)
    if decision.chosen is None:
        if not await _has_open_assignment(session, qualified.lead_id):
            add_event(
                session,
                LeadRecycled(
                    lead_id=qualified.lead_id,
                    reason="no eligible rep: "
                    + (", ".join(f"{rep_id} {why}" for rep_id, why in decision.skipped.items()) or "no reps"),
                ),
            )
        return None
    chosen = turn.candidates[decision.chosen]
    assignment = LeadAssigned(
        lead_id=qualified.lead_id,
        assignment_id=new_id(),
        rep_id=chosen.rep_id,
        team=chosen.team,
        source=qualified.lead.source,
        campaign=qualified.lead.campaign,
        rule=decision.rule,
        attempt=1,
        accept_due_at=now + accept_within,
        touch_due_at=now + touch_within,
    )
    # The lead's open assignment, if it has one, stops the insert: one statement instead of a look-up
    # and an insert. Events waiting in the session are written together at commit, not one per lead.
    assignments = Assignment.__table__  # Core, not ORM: nothing here needs the unit of work's bookkeeping
    with session.no_autoflush:
        inserted = await session.scalar(
            _insert(session)(assignments)
            .values(
                id=assignment.assignment_id,
                lead_id=assignment.lead_id,
                rep_id=assignment.rep_id,
                team=assignment.team,
                rule=assignment.rule,
                attempt=assignment.attempt,
                status="assigned",
                lead=qualified.lead.model_dump(mode="json"),
                decision=decision.as_dict(),
                accept_due_at=assignment.accept_due_at,
                touch_due_at=assignment.touch_due_at,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[assignments.c.lead_id], index_where=OPEN_ASSIGNMENT)
            .returning(assignments.c.seq)
        )
    if inserted is None:
        return None
    turn.last_rep_id = chosen.rep_id
    turn.opened[chosen.rep_id] += 1
    turn.candidates[chosen.rep_id] = replace(chosen, open_assignments=chosen.open_assignments + 1)
    add_event(session, assignment)
    return assignment.assignment_id


# What sales tools report


async def list_assignments(
    session: AsyncSession,
    *,
    rep_id: str | None,
    team: str | None,
    status: str | None,
    updated_since: datetime | None,
    after: int | None,
    limit: int,
) -> Sequence[Assignment]:
    """Up to ``limit`` assignments in the order they were made, after position ``after``, filtered."""
    query = select(Assignment).order_by(Assignment.seq).limit(limit)
    if rep_id is not None:
        query = query.where(Assignment.rep_id == rep_id)
    if team is not None:
        query = query.where(Assignment.team == team)
    if status is not None:
        query = query.where(Assignment.status == status)
    if updated_since is not None:
        query = query.where(Assignment.updated_at >= updated_since)
    if after is not None:
        query = query.where(Assignment.seq > after)
    return (await session.scalars(query)).all()


async def get_assignment(session: AsyncSession, *, assignment_id: str, for_update: bool = False) -> Assignment | None:
    """One assignment, or None; ``for_update`` locks its row until the transaction ends."""
    query = select(Assignment).where(Assignment.id == assignment_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def record_status(
    session: AsyncSession,
    *,
    assignment: Assignment,
    status: str,
    reason: str | None,
    amount: Decimal | None,
    occurred_at: datetime | None,
    now: datetime,
) -> None:
    """Moves an assignment to a new status and publishes lead.status_changed.

    Illegal moves, and a status that changed since ``assignment`` was read, raise Conflict; an
    ``occurred_at`` in the future or before the assignment raises InvalidReport.
    """
    current = assignment.status
    check_transition(current, status)
    occurred_at = occurred_at or now
    check_occurred_at(occurred_at, assigned_at=assignment.created_at, now=now)
    changes: dict[str, Any] = {"status": status, "reason": reason, "updated_at": now}
    if amount is not None:
        changes["amount"] = amount
    # Only one of two concurrent reports can still find the status it was checked against.
    moved = await session.scalar(
        update(Assignment)
        .where(Assignment.id == assignment.id, Assignment.status == current)
        .values(changes)
        .returning(Assignment.id)
    )
    if moved is None:
        raise Conflict(f"assignment {assignment.id} is no longer {current}: another report changed it first")
    if closes(current, status) and assignment.rep_id is not None:
        await _count_closed(session, assignment.rep_id)
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
