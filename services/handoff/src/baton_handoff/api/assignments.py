"""/v1/assignments: what sales tools pull and update, and the fallback queue team leads hand out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import select

from baton.auth import Principal
from baton.errors import Forbidden, NotFound
from baton.events import Timestamp
from baton.web import AssignmentsReaderDep, AssignmentsWriterDep, NowDep, Page, RuntimeDep, SessionDep, position_cursor
from baton_handoff import service
from baton_handoff.models import Assignment, Rep
from baton_handoff.schemas import AssignmentEventIn, AssignmentOut, AssignmentState, DecisionOut, LeadOut
from baton_handoff.settings import HandoffSettings

router = APIRouter(prefix="/v1/assignments", tags=["assignments"])

ANOTHER_TEAMS_REP = "another team's rep"


def at_risk(assignment: Assignment, *, now: datetime) -> bool:
    """Tells whether a running SLA clock of the assignment is past its at-risk instant."""
    accept_at_risk, touch_at_risk = assignment.accept_at_risk_at, assignment.touch_at_risk_at
    if assignment.status == "assigned" and accept_at_risk is not None and now >= accept_at_risk:
        return True
    return assignment.status in ("assigned", "accepted") and touch_at_risk is not None and now >= touch_at_risk


def _out(assignment: Assignment, now: datetime) -> AssignmentOut:
    return AssignmentOut(
        assignment_id=assignment.id,
        lead_id=assignment.lead_id,
        rep_id=assignment.rep_id,
        team=assignment.team,
        rule=assignment.rule,
        attempt=assignment.attempt,
        max_attempts=assignment.max_attempts,
        status=assignment.status,
        reason=assignment.reason,
        amount=assignment.amount,
        lead=LeadOut.model_validate(assignment.lead),
        sla_clock=assignment.sla_clock,
        accept_due_at=assignment.accept_due_at,
        touch_due_at=assignment.touch_due_at,
        accept_at_risk_at=assignment.accept_at_risk_at,
        touch_at_risk_at=assignment.touch_at_risk_at,
        at_risk=at_risk(assignment, now=now),
        fallback_team=assignment.fallback_team,
        escalated=assignment.escalated,
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


@router.get("")
async def list_assignments(
    session: SessionDep,
    principal: AssignmentsReaderDep,
    now: NowDep,
    rep_id: str | None = None,
    team: str | None = None,
    status: AssignmentState | None = None,
    updated_since: Timestamp | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[AssignmentOut]:
    """Assignments, oldest first; a rep token sees only its own, a team-lead token its team's and its queue.

    ``?status=queued&team=…`` is a team's fallback queue. A token with neither rep nor team (a CRM
    sync's integration token) sees every assignment.
    """
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
        after=position_cursor(cursor),
        limit=limit + 1,
    )
    return Page.of(rows, limit=limit, item=lambda a: _out(a, now), cursor=lambda a: str(a.seq))


@router.get("/{assignment_id}")
async def get_assignment(
    assignment_id: str, session: SessionDep, now: NowDep, principal: AssignmentsReaderDep
) -> AssignmentOut:
    """One assignment."""
    return _out(await _assignment_for(session, principal, assignment_id), now)


async def _callers_team(session: SessionDep, principal: Principal) -> str | None:
    if principal.team is not None or principal.rep_id is None:
        return principal.team
    return await session.scalar(select(Rep.team).where(Rep.rep_id == principal.rep_id))


def redacted(decision: dict[str, Any], *, team: str | None, own_rep_id: str | None) -> dict[str, Any]:
    """The decision as a rep or team lead may see it: reps outside ``team`` appear without their rep_id."""
    hidden: set[str] = set()
    candidates = []
    for candidate in decision.get("candidates", []):
        rep_id = candidate.get("rep_id")
        if rep_id != own_rep_id and (team is None or candidate.get("team") != team):
            hidden.add(rep_id)
            candidate = {
                **candidate,
                "rep_id": None,
                "team": None,
                "reason": f"{ANOTHER_TEAMS_REP}: {candidate['reason']}",
            }
        candidates.append(candidate)
    shown = {**decision, "candidates": candidates}
    if shown.get("chosen") in hidden:
        shown["chosen"] = None
    note = shown.get("note")
    if isinstance(note, str):
        for rep_id in sorted(hidden - {None}, key=len, reverse=True):
            note = note.replace(rep_id, ANOTHER_TEAMS_REP)
        shown["note"] = note
    return shown


def _legacy(decision: dict[str, Any]) -> dict[str, Any]:
    # Decisions stored before routing rules existed list candidates as rep ids with a separate "skipped" list.
    if not decision.get("candidates") or isinstance(decision["candidates"][0], dict):
        return decision
    skipped = {entry["rep_id"]: entry["reason"] for entry in decision.get("skipped", [])}
    chosen = decision.get("chosen")
    return {
        **{k: v for k, v in decision.items() if k != "skipped"},
        "candidates": [
            {
                "rep_id": rep_id,
                "outcome": "chosen" if rep_id == chosen else "skipped" if rep_id in skipped else "eligible",
                "reason": skipped.get(rep_id, "next in rotation" if rep_id == chosen else "eligible"),
            }
            for rep_id in decision["candidates"]
        ],
    }


@router.get("/{assignment_id}/decision")
async def get_decision(assignment_id: str, session: SessionDep, principal: AssignmentsReaderDep) -> DecisionOut:
    """Why this assignment went where it went: the rules tried, every candidate and why, who was chosen, when.

    Rep and team-lead tokens see their own assignments' decisions, with reps of other teams unnamed.
    """
    assignment = await _assignment_for(session, principal, assignment_id)
    decision = _legacy(dict(assignment.decision))
    if principal.rep_id is not None or principal.team is not None:
        decision = redacted(decision, team=await _callers_team(session, principal), own_rep_id=principal.rep_id)
    return DecisionOut.model_validate({**decision, "assignment_id": assignment.id})


@router.post("/{assignment_id}/events")
async def post_assignment_event(
    assignment_id: str,
    body: AssignmentEventIn,
    session: SessionDep,
    now: NowDep,
    runtime: RuntimeDep,
    principal: AssignmentsWriterDep,
) -> AssignmentOut:
    """Records accept / reject / contact / qualify / win / lose, or hands a queued lead to a rep (``assigned``).

    Illegal transitions answer 409; a rejection needs one of the configured reasons.
    """
    settings = runtime.settings
    assert isinstance(settings, HandoffSettings)
    async with session.begin():
        assignment = await _assignment_for(session, principal, assignment_id, for_update=True)
        if body.type == "assigned":
            assert body.rep_id is not None  # AssignmentEventIn requires it
            await service.hand_out(session, assignment=assignment, rep_id=body.rep_id, principal=principal, now=now)
        else:
            await service.record_status(
                session,
                assignment=assignment,
                status=body.type,
                reason=body.reason,
                amount=body.amount,
                occurred_at=body.occurred_at,
                now=now,
                reject_reasons=settings.reject_reasons,
            )
    return _out(assignment, now)
