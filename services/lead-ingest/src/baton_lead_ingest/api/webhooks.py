"""POST /v1/sources/{source}/leads: webhook intake, verified by the source's method; GET answers Meta's handshake."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from baton.errors import NotFound
from baton.web import PROBLEM_JSON, NowDep, RuntimeDep
from baton_lead_ingest.api.leads import IntakeDep
from baton_lead_ingest.api.sources import SourceCacheDep
from baton_lead_ingest.observability import LEADS, REFUSED, VERIFICATION_FAILURES, count_answer
from baton_lead_ingest.rate_limits import RateLimits
from baton_lead_ingest.schemas import LeadAccepted
from baton_lead_ingest.service import Answer, Intake
from baton_lead_ingest.verification import VerificationFailed, verify, verify_meta_handshake
from baton_lead_ingest.webhooks import (
    Delivery,
    LeadMapping,
    NotALead,
    commit_quarantined,
    delivery_intake_key,
    kept_headers,
    map_leads,
    parse_body,
    problem_media_type,
)

router = APIRouter(prefix="/v1", tags=["webhooks"])

MAX_CHALLENGE_LENGTH = 256

_WEBHOOK_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"description": "A payload carrying several leads: one item per lead, as `POST /v1/leads:batch` answers."},
    401: {"description": "The request does not prove it comes from the source.", "content": {PROBLEM_JSON: {}}},
    404: {"description": "No source has this name.", "content": {PROBLEM_JSON: {}}},
    422: {
        "description": "Verified, but it cannot become a lead: kept in quarantine (`quarantine_id`) with the reason.",
        "content": {PROBLEM_JSON: {}},
    },
    429: {"description": "The source is over its rate limit; see Retry-After.", "content": {PROBLEM_JSON: {}}},
}


@router.post(
    "/sources/{source}/leads",
    status_code=202,
    response_model=LeadAccepted,
    responses=_WEBHOOK_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"description": "The source's own JSON."}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            },
        }
    },
)
async def post_webhook(
    source: str, request: Request, runtime: RuntimeDep, intake: IntakeDep, sources: SourceCacheDep, now: NowDep
) -> Response:
    """Takes a source's webhook: verifies it, maps it to leads by the source's preset and field map, and stores them.

    The same `webhook-id` (or the vendor's own submission id) again returns the first answer and stores nothing.
    A payload that verifies but cannot become a lead answers 422 and is kept in quarantine to be replayed.
    """
    config = await sources.get(source)
    if config.rate_limit_per_minute is not None:
        rate_limits: RateLimits = request.app.state.rate_limits
        try:
            await rate_limits.hit(kind="source", name=source, per_minute=config.rate_limit_per_minute)
        except Exception:
            REFUSED.labels(source, "rate_limited").inc()
            raise
    body = await request.body()
    try:
        verified = verify(
            config.verification,
            headers=request.headers,
            query=request.query_params,
            body=body,
            secrets=config.verifying_secrets(now),
            now=now,
        )
    except VerificationFailed:
        VERIFICATION_FAILURES.labels(source).inc()
        REFUSED.labels(source, "unverified").inc()
        raise
    delivery = Delivery(
        source=source,
        content_type=request.headers.get("content-type"),
        body=body,
        headers=kept_headers(request.headers),
        received_at=now,
        webhook_id=verified.webhook_id,
    )
    try:
        mapped = map_leads(
            LeadMapping.of(config), parse_body(body, delivery.content_type), webhook_id=verified.webhook_id
        )
    except NotALead as error:
        quarantined = await commit_quarantined(runtime.sessions, delivery=delivery, error=error)
        if isinstance(quarantined, Answer) and not quarantined.repeated and quarantined.status == 422:
            LEADS.labels(source, "quarantined").inc()
        return _response(quarantined)
    key = delivery_intake_key(source, mapped.delivery_key) if mapped.delivery_key is not None else None
    result = await intake.submit(
        Intake(leads=mapped.leads, received_at=now, batch=len(mapped.leads) > 1, key=key), weight=len(mapped.leads)
    )
    if isinstance(result, Answer):
        count_answer(source, result)
    return _response(result)


def _response(result: Answer | Exception) -> Response:
    if isinstance(result, Exception):
        raise result
    return Response(result.body, status_code=result.status, media_type=problem_media_type(result))


@router.get(
    "/sources/{source}/leads",
    response_class=PlainTextResponse,
    responses={401: _WEBHOOK_RESPONSES[401], 404: _WEBHOOK_RESPONSES[404]},
)
async def get_webhook_handshake(source: str, request: Request, sources: SourceCacheDep, now: NowDep) -> str:
    """Answers Meta's subscription handshake (`hub.mode=subscribe`, `hub.verify_token`, `hub.challenge`) for a
    `meta` source: the challenge, when the verify token is the source's secret."""
    config = await sources.get(source)
    if config.verification != "meta":
        raise NotFound(f"the source {source!r} does not verify with meta, so it has no subscription handshake")
    query = request.query_params
    challenge = verify_meta_handshake(query, config.verifying_secrets(now))
    if challenge is None or len(challenge) > MAX_CHALLENGE_LENGTH:
        VERIFICATION_FAILURES.labels(source).inc()
        raise VerificationFailed("the subscription handshake's hub.verify_token does not match the source")
    return challenge
