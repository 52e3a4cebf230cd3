"""/v1/webhooks: each team's outbound webhook (admin) and its delivery log (admin and the team's lead)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Response
from fastapi import status as http_status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from baton.auth import Principal
from baton.errors import Forbidden
from baton.web import AdminDep, AssignmentsReaderDep, NowDep, Page, SessionDep, position_cursor
from baton_handoff import webhooks
from baton_handoff.audit import record_change
from baton_handoff.webhooks import EventType, WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

MAX_URL_LENGTH = 2048
DeliveryStatus = Literal["pending", "delivered", "failed"]
TeamName = Annotated[str, Path(min_length=1, max_length=100)]


def _receiver_url(url: str) -> str:
    if any(character.isspace() or not character.isprintable() for character in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; the signature proves the sender")
    if port == 0:
        raise ValueError("must not name port 0")
    return url


ReceiverUrl = Annotated[
    str,
    Field(min_length=1, max_length=MAX_URL_LENGTH, examples=["https://crm.example.com/hooks/baton"]),
    AfterValidator(_receiver_url),
]


class WebhookIn(BaseModel):
    """A team's endpoint: where to POST, which event types, and whether it is on."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: ReceiverUrl
    events: list[EventType] = Field(
        default_factory=lambda: list(webhooks.EVENT_TYPES),
        min_length=1,
        max_length=len(webhooks.EVENT_TYPES),
        description="CloudEvents types to push; every type handoff publishes by default.",
    )
    enabled: bool = True


class WebhookOut(BaseModel):
    """A team's endpoint as served: never its secret."""

    model_config = ConfigDict(from_attributes=True)

    team: str
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookOut):
    """A team's endpoint with the secret that signs its deliveries: answered once, on creation or rotation."""

    secret: str


class DeliveryOut(BaseModel):
    """One event pushed (or being pushed) to a team's endpoint."""

    delivery_id: str = Field(description="The webhook-id header: the same on every attempt.")
    event_id: str
    event_type: str
    lead_id: str
    assignment_id: str | None
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime


def _delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        delivery_id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        lead_id=delivery.lead_id,
        assignment_id=delivery.assignment_id,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )


def _with_secret(endpoint: WebhookEndpoint) -> WebhookWithSecret:
    return WebhookWithSecret(**WebhookOut.model_validate(endpoint).model_dump(), secret=endpoint.secret)


@router.put("/{team}", status_code=http_status.HTTP_200_OK, response_model=None)
async def put_webhook(
    team: TeamName, body: WebhookIn, response: Response, session: SessionDep, now: NowDep, principal: AdminDep
) -> WebhookOut | WebhookWithSecret:
    """Creates (201, with its secret) or replaces (200, without it) a team's webhook endpoint."""
    async with session.begin():
        endpoint, before = await webhooks.put_endpoint(
            session, team=team, url=body.url, events=body.events, enabled=body.enabled, now=now
        )
        await record_change(
            session,
            principal=principal,
            action="create" if before is None else "update",
            entity="webhook",
            entity_id=team,
            before=before,
            after=endpoint.described(),
            now=now,
        )
    if before is None:
        response.status_code = http_status.HTTP_201_CREATED
        return _with_secret(endpoint)
    return WebhookOut.model_validate(endpoint)


@router.post("/{team}:rotate-secret")
async def rotate_webhook_secret(
    team: TeamName, session: SessionDep, now: NowDep, principal: AdminDep
) -> WebhookWithSecret:
    """Gives a team's webhook a new secret, answered once; the old one also signs for 24 hours more."""
    async with session.begin():
        endpoint = await webhooks.rotate_secret(session, team=team, now=now)
        described = endpoint.described()
        await record_change(
            session,
            principal=principal,
            action="update",
            entity="webhook",
            entity_id=team,
            before=described,
            after={**described, "secret_rotated_at": now.isoformat()},
            now=now,
        )
    return _with_secret(endpoint)


@router.get("/{team}")
async def get_webhook(team: TeamName, session: SessionDep, _: AdminDep) -> WebhookOut:
    """A team's webhook endpoint, without its secret."""
    return WebhookOut.model_validate(await webhooks.get_endpoint(session, team=team))


@router.delete("/{team}", status_code=http_status.HTTP_204_NO_CONTENT)
async def delete_webhook(team: TeamName, session: SessionDep, now: NowDep, principal: AdminDep) -> Response:
    """Removes a team's webhook endpoint and its delivery log; nothing more is pushed to it."""
    async with session.begin():
        endpoint = await webhooks.delete_endpoint(session, team=team)
        await record_change(
            session,
            principal=principal,
            action="delete",
            entity="webhook",
            entity_id=team,
            before=endpoint.described(),
            after=None,
            now=now,
        )
    return Response(status_code=http_status.HTTP_204_NO_CONTENT)


def _may_read_deliveries(principal: Principal, team: str) -> bool:
    if "admin" in principal.scopes:
        return True
    # A team lead's token names the team and no rep; a rep's or an integration's does not read the log.
    return principal.rep_id is None and principal.team == team


@router.get("/{team}/deliveries")
async def list_webhook_deliveries(
    team: TeamName,
    session: SessionDep,
    principal: AssignmentsReaderDep,
    status: DeliveryStatus | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[DeliveryOut]:
    """A team's delivery log, newest first: for admins and that team's lead."""
    if not _may_read_deliveries(principal, team):
        raise Forbidden("only an admin or the team's lead reads its webhook deliveries")
    before = position_cursor(cursor)
    await webhooks.get_endpoint(session, team=team)
    rows = await webhooks.list_deliveries(session, team=team, status=status, before=before, limit=limit + 1)
    return Page.of(rows, limit=limit, item=_delivery_out, cursor=lambda d: str(d.seq))
