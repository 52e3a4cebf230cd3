"""/v1/quarantine: webhook payloads that verified but could not become leads, and their replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from baton.web import PROBLEM_JSON, AdminDep, NowDep, Page, RuntimeDep, SessionDep, position_cursor
from baton_lead_ingest.observability import count_answer
from baton_lead_ingest.rate_limits import TokenRateLimit
from baton_lead_ingest.schemas import LeadAccepted
from baton_lead_ingest.service import write_retrying
from baton_lead_ingest.webhooks import (
    QuarantinedPayloadOut,
    QuarantinedSummary,
    find_quarantined,
    list_quarantined,
    problem_media_type,
    quarantined_out,
    quarantined_summary,
    replay_quarantined,
)

router = APIRouter(prefix="/v1", tags=["quarantine"], dependencies=[TokenRateLimit])

_NOT_FOUND = {"description": "No quarantined payload has this id.", "content": {PROBLEM_JSON: {}}}


@router.get("/quarantine", response_model=Page[QuarantinedSummary])
async def get_quarantine(
    session: SessionDep,
    _: AdminDep,
    source: Annotated[str | None, Query(max_length=100, description="Only this source's payloads.")] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[QuarantinedSummary]:
    """Lists quarantined payloads, oldest first, with why each could not become a lead."""
    rows = await list_quarantined(session, source=source, after=position_cursor(cursor), limit=limit)
    return Page[QuarantinedSummary].of(rows, limit=limit, item=quarantined_summary, cursor=lambda row: str(row.id))


@router.get("/quarantine/{payload_id}", response_model=QuarantinedPayloadOut, responses={404: _NOT_FOUND})
async def get_quarantined(payload_id: int, session: SessionDep, _: AdminDep) -> QuarantinedPayloadOut:
    """Returns a quarantined payload whole: its raw body, the headers kept, the reason."""
    return quarantined_out(await find_quarantined(session, payload_id))


@router.post(
    "/quarantine/{payload_id}/replay",
    status_code=202,
    response_model=LeadAccepted,
    responses={
        200: {"description": "A payload carrying several leads: one item per lead."},
        404: _NOT_FOUND,
        409: {"description": "Replayed already, or its source is gone.", "content": {PROBLEM_JSON: {}}},
        422: {"description": "It still cannot become a lead; it stays in quarantine.", "content": {PROBLEM_JSON: {}}},
    },
)
async def post_replay(payload_id: int, runtime: RuntimeDep, _: AdminDep, now: NowDep) -> Response:
    """Maps a quarantined payload again by its source's current preset and field map, and stores it, exactly once."""
    replayed = await write_retrying(
        runtime.sessions, lambda session: replay_quarantined(session, payload_id=payload_id, now=now)
    )
    count_answer(replayed.source, replayed.answer)
    answer = replayed.answer
    return Response(answer.body, status_code=answer.status, media_type=problem_media_type(answer))
