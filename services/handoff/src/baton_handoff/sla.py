"""SLA clocks: the assignments' deadline columns are the timers, scanned by deadline on every tick.

At a deadline the assignment is closed as ``reassigned``, ``sla.breached`` is published and the lead
goes to the next eligible rep who has not had it, or to the fallback queue (``escalated``) once its
attempts are spent or nobody is left. The scan claims due rows with ``FOR UPDATE SKIP LOCKED``, so
replicas split the work, a breach fires once, and breaches that fell due while handoff was down fire
on the first tick after start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db import after_commit
from baton.events import SlaBreached
from baton.failures import is_transient
from baton.outbox import OutboxEntry, add_event
from baton.runtime import ServiceRuntime
from baton_handoff import observability
from baton_handoff.domain import QUEUED
from baton_handoff.models import ACCEPT_CLOCK_RUNNING, TOUCH_CLOCK_RUNNING, Assignment
from baton_handoff.service import assign_lead, close_for_reassignment, drain_queue, queue_lead, reps_who_had

logger = logging.getLogger(__name__)

Sla = Literal["accept", "touch"]

ACCEPT_CLOCK_RUNS = frozenset({"assigned"})
"""Statuses in which the accept clock runs: accepting stops it."""
TOUCH_CLOCK_RUNS = frozenset({"assigned", "accepted"})
"""Statuses in which the touch clock runs: the first contact stops it."""

DEFAULT_TICK_SECONDS = 0.5
DEFAULT_BATCH_SIZE = 100


def breached_sla(
    *, status: str, accept_due_at: datetime | None, touch_due_at: datetime | None, now: datetime
) -> tuple[Sla, datetime] | None:
    """The clock an assignment has run out of at ``now`` and its deadline, the earlier one if both; None if neither."""
    due: list[tuple[datetime, Sla]] = []
    if status in ACCEPT_CLOCK_RUNS and accept_due_at is not None and accept_due_at <= now:
        due.append((accept_due_at, "accept"))
    if status in TOUCH_CLOCK_RUNS and touch_due_at is not None and touch_due_at <= now:
        due.append((touch_due_at, "touch"))
    if not due:
        return None
    due_at, sla = min(due)
    return sla, due_at


def attempts_left(*, attempt: int, max_attempts: int) -> bool:
    """Tells whether a lead whose ``attempt``-th assignment breached may be routed to another rep."""
    return attempt < max_attempts


async def claim_due(session: AsyncSession, *, now: datetime, limit: int) -> list[Assignment]:
    """Locks up to ``limit`` assignments with a clock run out at ``now``, oldest deadline first.

    Rows another transaction holds are skipped, not waited for: that replica acts on them. SQLite
    has one writer at a time and ignores the lock clause.
    """
    claimed: dict[str, Assignment] = {}
    # The status conditions are the partial indexes' own text, so the planner uses them for any bound ``now``.
    for running, due_at in (
        (ACCEPT_CLOCK_RUNNING, Assignment.accept_due_at),
        (TOUCH_CLOCK_RUNNING, Assignment.touch_due_at),
    ):
        query = (
            select(Assignment)
            .where(running, due_at <= now)
            .order_by(due_at)
            .limit(limit - len(claimed))
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        for assignment in await session.scalars(query):
            claimed.setdefault(assignment.id, assignment)
        if len(claimed) >= limit:
            break
    return list(claimed.values())


def _escalation(assignment: Assignment, *, why: str, now: datetime) -> dict[str, Any]:
    return {
        **assignment.decision,
        "candidates": [],
        "chosen": None,
        "escalated": True,
        "why": why,
        "decided_at": now.isoformat(),
    }


async def act_on_breach(session: AsyncSession, *, assignment: Assignment, now: datetime) -> SlaBreached | None:
    """Closes an assignment whose clock ran out, publishes ``sla.breached`` and routes the lead on or escalates it.

    Returns None, and changes nothing, when the assignment moved meanwhile (its rep accepted or made
    contact at the last moment). The breach is counted in the metrics once the transaction commits.
    """
    event = await _close_and_route_on(session, assignment=assignment, now=now)
    if event is not None:
        after_commit(session, partial(observability.breached, sla=event.sla, action=event.action))
    return event


async def _close_and_route_on(session: AsyncSession, *, assignment: Assignment, now: datetime) -> SlaBreached | None:
    breached = breached_sla(
        status=assignment.status,
        accept_due_at=assignment.accept_due_at,
        touch_due_at=assignment.touch_due_at,
        now=now,
    )
    if breached is None:
        return None
    sla, due_at = breached
    if assignment.rep_id is None or not await close_for_reassignment(
        session, assignment=assignment, expected_status=assignment.status, now=now
    ):
        return None
    reassigned = SlaBreached(
        lead_id=assignment.lead_id,
        assignment_id=assignment.id,
        rep_id=assignment.rep_id,
        sla=sla,
        due_at=due_at,
        breached_at=now,
        action="reassigned",
    )
    escalated = reassigned.model_copy(update={"action": "escalated"})
    if not attempts_left(attempt=assignment.attempt, max_attempts=assignment.max_attempts):
        add_event(session, escalated)
        queued = await queue_lead(
            session,
            lead_id=assignment.lead_id,
            lead=assignment.lead,
            team=assignment.fallback_team or assignment.team,
            rule=assignment.rule,
            attempt=assignment.attempt + 1,
            decision=_escalation(
                assignment,
                why=f"{sla} SLA breached on attempt {assignment.attempt} of {assignment.max_attempts}",
                now=now,
            ),
            now=now,
        )
        queued.escalated = True
        return escalated
    # The breach is published before the lead's next assignment, so a consumer reading the lead's
    # events in order sees the old assignment end before the new one starts.
    envelope = add_event(session, reassigned)
    routed = await assign_lead(
        session,
        lead_id=assignment.lead_id,
        lead=assignment.lead,
        now=now,
        attempt=assignment.attempt + 1,
        excluded_reps=await reps_who_had(session, lead_id=assignment.lead_id),
        action_if_none="escalated",
    )
    if routed.status != QUEUED:
        return reassigned
    # Nobody who has not had the lead can take it: it waits in the queue, and the breach says so.
    # Queueing publishes nothing, so the corrected breach still comes right after the old assignment.
    await session.execute(delete(OutboxEntry).where(OutboxEntry.event_id == envelope.id))
    add_event(session, escalated)
    return escalated


async def act_on_due_breaches(session: AsyncSession, *, now: datetime, limit: int) -> list[SlaBreached]:
    """Acts on up to ``limit`` breaches due at ``now`` in the session's transaction; returns what was published."""
    fired: list[SlaBreached] = []
    for assignment in await claim_due(session, now=now, limit=limit):
        event = await act_on_breach(session, assignment=assignment, now=now)
        if event is not None:
            fired.append(event)
    return fired


async def run_due(
    sessions: async_sessionmaker[AsyncSession], now: datetime, *, limit: int = DEFAULT_BATCH_SIZE
) -> list[SlaBreached]:
    """One tick: acts on up to ``limit`` due breaches in one transaction, then drains the fallback queue.

    A batch that fails for a reason that will not pass is tried again one breach per transaction, so
    one breach that cannot be acted on does not hold back the others due after it.
    """
    try:
        async with sessions() as session, session.begin():
            fired = await act_on_due_breaches(session, now=now, limit=limit)
    except Exception as exc:
        if is_transient(exc):
            raise
        logger.exception("acting on a batch of sla breaches failed; acting on them one at a time")
        fired = await _act_one_at_a_time(sessions, now=now, limit=limit)
    if fired:
        logger.info(
            "sla breaches acted on",
            extra={"breaches": len(fired), "escalated": sum(e.action == "escalated" for e in fired)},
        )
    async with sessions() as session, session.begin():
        await drain_queue(session, now=now)
    return fired


async def _act_one_at_a_time(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, limit: int
) -> list[SlaBreached]:
    async with sessions() as session:
        due = [assignment.id for assignment in await claim_due(session, now=now, limit=limit)]
    fired: list[SlaBreached] = []
    for assignment_id in due:
        try:
            async with sessions() as session, session.begin():
                assignment = await session.scalar(
                    select(Assignment)
                    .where(Assignment.id == assignment_id)
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
                event = None if assignment is None else await act_on_breach(session, assignment=assignment, now=now)
        except Exception:
            logger.exception(
                "acting on an sla breach failed; trying again at the next tick", extra={"assignment_id": assignment_id}
            )
            continue
        if event is not None:
            fired.append(event)
    return fired


async def sla_scheduler(runtime: ServiceRuntime) -> None:
    """Acts on SLA breaches as they fall due, every ``sla_tick_seconds``, for as long as the service runs."""
    tick = float(getattr(runtime.settings, "sla_tick_seconds", DEFAULT_TICK_SECONDS))
    limit = int(getattr(runtime.settings, "sla_batch_size", DEFAULT_BATCH_SIZE))
    while True:
        try:
            fired = await run_due(runtime.sessions, runtime.clock(), limit=limit)
        except Exception as exc:
            # A tick that failed is tried again at the next one: the due rows are still due.
            if is_transient(exc):
                logger.warning("sla tick failed; trying again", exc_info=True)
            else:
                logger.exception("sla tick failed; trying again")
            fired = []
        if len(fired) < limit:
            await asyncio.sleep(tick)


@dataclass(frozen=True)
class SlaRisk:
    """How many of a rep's open assignments are past 80% of one SLA clock, and past its deadline."""

    team: str | None
    rep_id: str | None
    sla: Sla
    at_risk: int
    breached: int


async def at_risk_counts(session: AsyncSession, *, now: datetime) -> list[SlaRisk]:
    """Per team, rep and clock: open assignments at risk at ``now``, and breached but not yet acted on."""
    counts: list[SlaRisk] = []
    clocks: Sequence[tuple[Sla, Any, Any, Any]] = (
        ("accept", ACCEPT_CLOCK_RUNNING, Assignment.accept_at_risk_at, Assignment.accept_due_at),
        ("touch", TOUCH_CLOCK_RUNNING, Assignment.touch_at_risk_at, Assignment.touch_due_at),
    )
    for sla, running, at_risk_at, due_at in clocks:
        breached = due_at <= now
        rows = await session.execute(
            select(
                Assignment.team,
                Assignment.rep_id,
                func.sum(case((breached, 0), else_=1)),
                func.sum(case((breached, 1), else_=0)),
            )
            .where(running, at_risk_at <= now)
            .group_by(Assignment.team, Assignment.rep_id)
        )
        counts.extend(
            SlaRisk(team=team, rep_id=rep_id, sla=sla, at_risk=int(at_risk), breached=int(late))
            for team, rep_id, at_risk, late in rows
        )
    return sorted(counts, key=lambda c: (c.team or "", c.rep_id or "", c.sla))
