"""GET /v1/stream: the KPIs and the live SLA board as server-sent events, for dashboards."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from sse_starlette import EventSourceResponse, ServerSentEvent

from baton.auth import Principal
from baton.runtime import ServiceRuntime
from baton.web import require_scope, runtime_of
from baton_metrics.api.deps import AskedFilter, callers_filter
from baton_metrics.api.kpis import From, To, get_kpis
from baton_metrics.api.sla import live_sla_board
from baton_metrics.changes import ReadModelChanges
from baton_metrics.domain import at_risk_from, kpi_day
from baton_metrics.schemas import GroupBy
from baton_metrics.service import KpiFilter

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["stream"])

PING_SECONDS = 15
"""A comment line this often keeps proxies from closing a quiet stream."""
REFRESH_SECONDS = 30.0
"""At the latest, a stream reads the KPIs and the board again this often, changed or not."""
RETRY_MILLISECONDS = 3000
"""How long EventSource waits before it reconnects a dropped stream."""
_PAST_DEADLINE = timedelta(milliseconds=10)

_metrics_reader = require_scope("metrics:read")


async def stream_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))],
    access_token: Annotated[
        str | None,
        Query(description="The bearer token, for EventSource, which cannot send an Authorization header."),
    ] = None,
) -> Principal:
    """The caller, from ``Authorization: Bearer`` or else ``?access_token=``, holding ``metrics:read``."""
    if credentials is None and access_token:
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=access_token)
    return await _metrics_reader(request, credentials)


@dataclass(frozen=True)
class LiveView:
    """What one stream shows: the KPIs of a range (today by default) and the live SLA board, held to its caller."""

    principal: Principal
    start: date | None
    end: date | None
    group_by: GroupBy | None
    asked: KpiFilter

    async def kpis(self, session: AsyncSession, now: datetime) -> dict[str, Any]:
        """The same report as ``GET /v1/kpis``; today's when the stream named no range."""
        today = kpi_day(now)
        start, end = (today, today) if self.start is None and self.end is None else (self.start, self.end)
        report = await get_kpis(session, self.principal, self.asked, from_=start, to=end, group_by=self.group_by)
        return report.model_dump(mode="json", by_alias=True)

    async def sla(self, session: AsyncSession, now: datetime) -> tuple[dict[str, Any], datetime | None]:
        """The same board as ``GET /v1/sla/live``, and when an open assignment next becomes at risk or breached."""
        only = callers_filter(self.principal, KpiFilter(team=self.asked.team, rep_id=self.asked.rep_id))
        board, clocks = await live_sla_board(session, only, now)
        moments: list[datetime] = []
        for clock in clocks:
            _, due_at = clock.running_sla()
            at_risk_at = at_risk_from(started_at=clock.assigned_at, due_at=due_at)
            moments += [moment for moment in (at_risk_at, due_at + _PAST_DEADLINE) if moment > now]
        return board.model_dump(mode="json", by_alias=True), min(moments, default=None)


def _board_shape(board: dict[str, Any]) -> Any:
    """The board without what changes every instant (``now``, ``seconds_left``): a new shape is news."""
    rows = [{k: v for k, v in row.items() if k != "seconds_left"} for row in board["at_risk"] + board["breached"]]
    return {k: v for k, v in board.items() if k not in ("now", "at_risk", "breached")}, rows


def _event(name: str, data: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(data, separators=(",", ":")), event=name, retry=RETRY_MILLISECONDS)


async def _live_events(
    view: LiveView,
    runtime: ServiceRuntime,
    changes: ReadModelChanges,
    first: tuple[dict[str, Any], dict[str, Any], datetime | None],
) -> AsyncIterator[ServerSentEvent]:
    kpis, board, next_transition = first
    changes.listeners += 1
    try:
        seen = changes.generation
        yield _event("kpis", kpis)
        yield _event("sla", board)
        while True:
            timeout = REFRESH_SECONDS
            if next_transition is not None:
                timeout = max(
                    min(timeout, (next_transition - runtime.clock()).total_seconds()), _PAST_DEADLINE.total_seconds()
                )
            seen = await changes.wait(seen, within=timeout)
            try:
                async with runtime.sessions() as session:
                    now = runtime.clock()
                    new_kpis = await view.kpis(session, now)
                    new_board, next_transition = await view.sla(session, now)
            except Exception:
                logger.warning("could not read the KPIs for a stream; trying again", exc_info=True)
                next_transition = None
                continue
            if new_kpis != kpis:
                kpis = new_kpis
                yield _event("kpis", kpis)
            if _board_shape(new_board) != _board_shape(board):
                yield _event("sla", new_board)
            board = new_board
    finally:
        changes.listeners -= 1


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`kpis` and `sla` events."}},
)
async def stream(
    request: Request,
    asked: AskedFilter,  # before the caller's token: ?access_token= stays the last query parameter listed
    principal: Annotated[Principal, Depends(stream_reader)],
    from_: From = None,
    to: To = None,
    group_by: GroupBy | None = None,
) -> EventSourceResponse:
    """Server-sent events: ``kpis`` (as ``GET /v1/kpis``, today's by default) whenever the totals change,
    ``sla`` (as ``GET /v1/sla/live``) whenever the live board does; both at once on connecting.

    EventSource cannot send an Authorization header, so this route also takes the token as
    ``?access_token=``. A rep token sees only its own rows, a team-lead token its team's.
    """
    view = LiveView(principal=principal, start=from_, end=to, group_by=group_by, asked=asked)
    runtime = runtime_of(request)
    # Read before the stream starts, so that a filter the caller may not use answers 403, not an empty stream;
    # in a session of its own, so that no database connection stays open for as long as the stream.
    async with runtime.sessions() as session:
        now = runtime.clock()
        first = (await view.kpis(session, now), *(await view.sla(session, now)))
    changes: ReadModelChanges = request.app.state.read_model_changes
    return EventSourceResponse(
        _live_events(view, runtime, changes, first), ping=PING_SECONDS, headers={"Cache-Control": "no-store"}
    )
