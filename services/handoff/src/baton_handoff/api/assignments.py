"""/v1/assignments: what sales tools pull and update."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from baton.auth import Principal
from baton.errors import BatonError, Forbidden, NotFound
from baton.events import RoutingAttributes, Timestamp
from baton.web import AssignmentsReaderDep, AssignmentsWriterDep, NowDep, Page, SessionDep
from baton_handoff import service
from baton_handoff.models import Assignment
from baton_handoff.schemas import AssignmentEventIn, AssignmentOut, AssignmentState, DecisionOut

router = APIRouter(prefix="/v1/assignments", tags=["assignments"])


def _out(assignment: Assignment) -> AssignmentOut:
    return AssignmentOut(
        assignment_id=assignment.id,
        lead_id=assignment.lead_id,
        rep_id=assignment.rep_id,
        team=assignment.team,
        rule=assignment.rule,
        attempt=assignment.attempt,
        status=assignment.status,
        reason=assignment.reason,
        amount=assignment.amount,
        lead=RoutingAttributes.model_validate(assignment.lead),
        accept_due_at=assignment.accept_due_at,
        touch_due_at=assignment.touch_due_at,
        created_at=assignment.created_at,
        updated_at=assignment.updated_at,
    )


def _visible_to(principal: Principal, assignment: Assignment) -> bool:
    if principal.rep_id is not None:
        return assignment.rep_id == principal.rep_id
    if principal.team is not None:
        return assignment.team == principal.team
    return True


async def _assignment_for(
    session: SessionDep, principal: Principal, assignment_id: str, *, for_update: bool = False
) -> Assignment:
    assignment = await service.get_assignment(session, assignment_id=assignment_id, for_update=for_update)
    if assignment is None or not _visible_to(principal, assignment):
        raise NotFound(f"no assignment {assignment_id}")
    return assignment


class _BadCursor(BatonError):
    status = 400
    title = "Bad cursor"


_LARGEST_POSITION = 2**31 - 1


def _position(cursor: str | None) -> int | None:
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit() and int(cursor) <= _LARGEST_POSITION):
        raise _BadCursor("cursor must be a value from next_cursor")
    return int(cursor)


@router.get("")
async def list_assignments(
    session: SessionDep,
    principal: AssignmentsReaderDep,
    rep_id: str | None = None,
    team: str | None = None,
    status: AssignmentState | None = None,
    updated_since: Timestamp | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[AssignmentOut]:
    """Assignments, oldest first; a rep token sees only its own, a team token its team's."""
    if principal.rep_id is not None:
        if rep_id is not None and rep_id != principal.rep_id:
            raise Forbidden("a rep token can only list its own assignments")
        rep_id = principal.rep_id
    if principal.team is not None:
        if team is not None and team != principal.team:
            raise Forbidden("a team token can only list its own team's assignments")
        team = principal.team
    rows = await service.list_assignments(
        session,
        rep_id=rep_id,
        team=team,
        status=status,
        updated_since=updated_since,
        after=_position(cursor),
        limit=limit + 1,
    )
    return Page.of(rows, limit=limit, item=_out, cursor=lambda a: str(a.seq))


@router.get("/{assignment_id}")
async def get_assignment(assignment_id: str, session: SessionDep, principal: AssignmentsReaderDep) -> AssignmentOut:
    """One assignment."""
    return _out(await _assignment_for(session, principal, assignment_id))


@router.get("/{assignment_id}/decision")
async def get_decision(assignment_id: str, session: SessionDep, principal: AssignmentsReaderDep) -> DecisionOut:
    """Why this assignment went to its rep: the rule, the candidates, who was skipped and why."""
    assignment = await _assignment_for(session, principal, assignment_id)
    return DecisionOut(assignment_id=assignment.id, **assignment.decision)


@router.post("/{assignment_id}/events")
async def post_assignment_event(
    assignment_id: str, body: AssignmentEventIn, session: SessionDep, now: NowDep, principal: AssignmentsWriterDep
) -> AssignmentOut:
    """Records accept / reject / contact / qualify / win / lose; illegal transitions answer 409."""
    async with session.begin():
        assignment = await _assignment_for(session, principal, assignment_id, for_update=True)
        await service.record_status(
            session,
            assignment=assignment,
            status=body.type,
            reason=body.reason,
            amount=body.amount,
            occurred_at=body.occurred_at,
            now=now,
        )
    return _out(assignment)
