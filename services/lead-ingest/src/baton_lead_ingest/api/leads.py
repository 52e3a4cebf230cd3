"""POST /v1/leads: the canonical intake API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, status
from sqlalchemy.exc import IntegrityError

from baton.events import utcnow
from baton.web import LeadsWriterDep, SessionDep
from baton_lead_ingest.models import IdempotentAnswer
from baton_lead_ingest.schemas import LeadAccepted, LeadIn
from baton_lead_ingest.service import receive_lead

router = APIRouter(prefix="/v1", tags=["leads"])

MERGE_ATTEMPTS = 3


@router.post("/leads", status_code=status.HTTP_202_ACCEPTED)
async def post_lead(
    incoming: LeadIn,
    session: SessionDep,
    _: LeadsWriterDep,
    idempotency_key: Annotated[str | None, Header(max_length=300)] = None,
) -> LeadAccepted:
    """Takes one lead; the same person again merges into their lead, the same Idempotency-Key repeats the answer."""
    for attempt in range(1, MERGE_ATTEMPTS + 1):
        try:
            async with session.begin():
                if idempotency_key is not None:
                    earlier = await session.get(IdempotentAnswer, idempotency_key)
                    if earlier is not None:
                        return LeadAccepted(lead_id=earlier.lead_id, duplicate=earlier.duplicate)
                answer = await receive_lead(session, incoming=incoming, now=utcnow())
                if idempotency_key is not None:
                    session.add(
                        IdempotentAnswer(key=idempotency_key, lead_id=answer.lead_id, duplicate=answer.duplicate)
                    )
            return answer
        except IntegrityError:
            # A concurrent post of the same person or key won the race; the next try sees its row.
            if attempt == MERGE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
