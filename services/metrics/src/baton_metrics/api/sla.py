"""GET /v1/sla/live."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from baton.web import MetricsReaderDep, NowDep, SessionDep
from baton_metrics.api.deps import callers_filter
from baton_metrics.domain import kpi_day, rep_compliance, sla_state
from baton_metrics.readmodel import OpenAssignment
from baton_metrics.schemas import OpenSla, SlaBoard
from baton_metrics.service import KpiFilter, counter_sums, open_assignments

router = APIRouter(prefix="/v1/sla", tags=["sla"])

COMPLIANCE_DAYS = 30
SLA_KPIS = ("accept_sla_met", "accept_sla_breached", "touch_sla_met", "touch_sla_breached")


@router.get("/live", response_model_by_alias=True)
async def get_live_sla(
    session: SessionDep,
    principal: MetricsReaderDep,
    now: NowDep,
    team: str | None = None,
    rep_id: str | None = None,
    from_: Annotated[date | None, Query(alias="from", description="First UTC day of the compliance.")] = None,
    to: Annotated[date | None, Query(description="Last UTC day of the compliance; today by default.")] = None,
) -> SlaBoard:
    """Open assignments whose SLA is at risk or breached, with time left, and each rep's compliance (30 days)."""
    only = callers_filter(principal, KpiFilter(team=team, rep_id=rep_id))
    board, _ = await live_sla_board(session, only, now, start=from_, end=to)
    return board


async def live_sla_board(
    session: AsyncSession, only: KpiFilter, now: datetime, *, start: date | None = None, end: date | None = None
) -> tuple[SlaBoard, list[OpenAssignment]]:
    """The board of ``GET /v1/sla/live`` for a filter already held to its caller, and the open assignments it shows."""
    end = end or kpi_day(now)
    start = start or end - timedelta(days=COMPLIANCE_DAYS - 1)
    board: dict[str, list[OpenSla]] = {"at_risk": [], "breached": []}
    clocks = await open_assignments(session, only=only)
    for clock in clocks:
        sla, due_at = clock.running_sla()
        state = sla_state(started_at=clock.assigned_at, due_at=due_at, now=now)
        if state == "on_track":
            continue
        board[state].append(
            OpenSla(
                assignment_id=clock.assignment_id,
                lead_id=clock.lead_id,
                rep_id=clock.rep_id,
                team=clock.team or None,
                sla=sla,
                state=state,
                assigned_at=clock.assigned_at,
                due_at=due_at,
                seconds_left=round((due_at - now).total_seconds(), 3),
            )
        )
    sums = await counter_sums(session, start=start, end=end, only=only, group_by="rep_id", kpis=SLA_KPIS)
    live_board = SlaBoard(
        now=now,
        open_assignments=len(clocks),
        at_risk=sorted(board["at_risk"], key=lambda row: row.due_at),
        breached=sorted(board["breached"], key=lambda row: row.due_at),
        from_=start,
        to=end,
        reps=rep_compliance(sums),
    )
    return live_board, clocks
