"""POST /v1/leads, /v1/leads:batch and /v1/activities, GET /v1/leads/{lead_id}: the canonical intake API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request, Response, status
from pydantic import ValidationError

from baton.web import PROBLEM_JSON, LeadsReaderDep, LeadsWriterDep, NowDep, RuntimeDep, SessionDep
from baton_lead_ingest.domain import request_fingerprint
from baton_lead_ingest.group_commit import GroupCommit
from baton_lead_ingest.rate_limits import TokenRateLimit
from baton_lead_ingest.schemas import (
    ActivityAccepted,
    ActivityPost,
    BatchAnswer,
    FieldError,
    LeadAccepted,
    LeadBatchIn,
    LeadIn,
    LeadOut,
)
from baton_lead_ingest.service import (
    IdempotencyKey,
    Intake,
    IntakeResult,
    InvalidLead,
    check_activity,
    commit_activity,
    find_lead,
)

router = APIRouter(prefix="/v1", tags=["leads"], dependencies=[TokenRateLimit])

LEADS_PATH = "/leads"
BATCH_PATH = "/leads:batch"
LEAD_PATH = "/leads/{lead_id}"
ACTIVITIES_PATH = "/activities"

IntakeWriter = GroupCommit[Intake, IntakeResult]


async def get_intake(request: Request) -> IntakeWriter:
    """Returns the service's intake writer, which stores concurrent requests together."""
    intake: IntakeWriter = request.app.state.intake
    return intake


IntakeDep = Annotated[IntakeWriter, Depends(get_intake)]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=300,
        description=(
            "Repeating a request with the same key and the same body returns the first answer and stores nothing "
            "new; the same key with a different body answers 422. Keys are the caller's own."
        ),
    ),
]
_KEY_REUSED = {
    "description": "Validation failed, or the Idempotency-Key was already used with a different body.",
    "content": {PROBLEM_JSON: {}},
}


_NOT_FOUND = {"description": "No lead has this id (or e-mail address).", "content": {PROBLEM_JSON: {}}}


async def _answer(intake: IntakeWriter, request: Intake) -> Response:
    result = await intake.submit(request, weight=max(1, len(request.valid_leads)))
    return _response(result)


def _response(result: IntakeResult) -> Response:
    if isinstance(result, Exception):
        raise result
    return Response(result.body, status_code=result.status, media_type="application/json")


def _key(caller: str, key: str, route: str, canonical_body: object) -> IdempotencyKey:
    return IdempotencyKey(caller=caller, key=key, request_hash=request_fingerprint(route, canonical_body))


@router.post(
    LEADS_PATH, status_code=status.HTTP_202_ACCEPTED, response_model=LeadAccepted, responses={422: _KEY_REUSED}
)
async def post_lead(
    incoming: LeadIn,
    caller: LeadsWriterDep,
    intake: IntakeDep,
    now: NowDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Takes one lead; the same person again merges into their lead, the same key and body repeat the answer."""
    key = None
    if idempotency_key is not None:
        key = _key(caller.subject, idempotency_key, LEADS_PATH, incoming.model_dump(mode="json"))
    return await _answer(intake, Intake(leads=[incoming], received_at=now, batch=False, key=key))


@router.post(BATCH_PATH, response_model=BatchAnswer, responses={422: _KEY_REUSED})
async def post_lead_batch(
    batch: LeadBatchIn,
    caller: LeadsWriterDep,
    intake: IntakeDep,
    now: NowDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Takes up to 1,000 leads in one transaction and answers 200 with one item per lead, by position.

    Each item is `{"index", "status": 202, "lead_id", "duplicate"}` for a lead received (a new one, or merged
    into a known one, including an earlier item of the same batch), or `{"index", "status": 422, "errors":
    [{"loc", "msg", "type"}]}` for a lead that failed validation, `loc` being the path within that lead; a bad
    item does not sink the others. The Idempotency-Key covers the whole batch.
    """
    leads: list[LeadIn | InvalidLead] = []
    for raw in batch.leads:
        try:
            leads.append(LeadIn.model_validate(raw))
        except ValidationError as invalid:
            errors = [FieldError(loc=list(e["loc"]), msg=e["msg"], type=e["type"]) for e in invalid.errors()]
            leads.append(InvalidLead(errors=errors))
    key = None
    if idempotency_key is not None:
        canonical = [
            lead.model_dump(mode="json") if isinstance(lead, LeadIn) else raw
            for lead, raw in zip(leads, batch.leads, strict=True)
        ]
        key = _key(caller.subject, idempotency_key, BATCH_PATH, canonical)
    return await _answer(intake, Intake(leads=leads, received_at=now, batch=True, key=key))


@router.get(LEAD_PATH, response_model=LeadOut, responses={404: _NOT_FOUND})
async def get_lead(lead_id: str, session: SessionDep, _: LeadsReaderDep) -> LeadOut:
    """Returns the lead as Baton holds it: its canonical fields, where it came from, when it came and last changed."""
    return await find_lead(session, lead_id)


@router.post(
    ACTIVITIES_PATH,
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ActivityAccepted,
    responses={404: _NOT_FOUND, 422: _KEY_REUSED},
)
async def post_activity(
    activity: ActivityPost,
    caller: LeadsWriterDep,
    runtime: RuntimeDep,
    now: NowDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Records an engagement of a known lead, found by `lead_id` or by `email`, and publishes `lead.activity`.

    An activity for someone who is not a lead yet answers 404 and is not kept, because keeping it would hold
    personal data of a person who may never become a lead, with nothing to say how long; send the lead first,
    then the activity again (with the same Idempotency-Key, if any: a 404 is not remembered under it).
    """
    check_activity(activity, now)
    key = None
    if idempotency_key is not None:
        key = _key(caller.subject, idempotency_key, ACTIVITIES_PATH, activity.model_dump(mode="json"))
    return _response(await commit_activity(runtime.sessions, activity, key=key, now=now))
