"""Outbound webhooks: each team's endpoint, the deliveries queued for it, and the worker that sends them.

A consumer group of its own only writes delivery rows, in the transaction that records the event, so a
slow or dead receiver never holds up routing. The worker claims due rows, signs each CloudEvent (JSON,
structured mode) with Standard Webhooks and retries failures with backoff; receivers deduplicate on the
``webhook-id``, which stays the same across retries, since a send can succeed and still be repeated.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

import httpx
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from standardwebhooks import Webhook

from baton.consumer import EventHandler, Incoming, handlers
from baton.db import Base, UTCDateTime, insert_for
from baton.errors import NotFound
from baton.events import (
    Clock,
    CloudEvent,
    EventData,
    LeadAssigned,
    LeadRecycled,
    LeadStatusChanged,
    SlaBreached,
    new_id,
)
from baton.runtime import ServiceRuntime
from baton.settings import Settings
from baton_handoff.domain import anonymous_reason
from baton_handoff.models import ERASED_LEADS, Assignment
from baton_handoff.settings import HandoffSettings

logger = logging.getLogger(__name__)

EventType = Literal[
    "baton.lead.assigned.v1", "baton.lead.status_changed.v1", "baton.sla.breached.v1", "baton.lead.recycled.v1"
]
"""What a team's endpoint can subscribe to: every event handoff publishes on leads.handoff."""
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
DELIVERY_STATUSES = (PENDING, DELIVERED, FAILED)
CONTENT_TYPE = "application/cloudevents+json"

# After the n-th failed attempt the next waits RETRY_DELAYS[n - 1], give or take JITTER, so that the
# deliveries of a receiver that was down do not all come back in the same second.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
# A claimed delivery is not due again for this long: another replica takes it over only if the one that
# claimed it died before recording the outcome. Far longer than a send may take (REQUEST_TIMEOUT).
CLAIM_LEASE = timedelta(minutes=2)
REQUEST_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
DELIVERIES_PER_PASS = 20
POLL_SECONDS = 1.0
# A rotated-out secret still signs, beside the new one, for as long as lead-ingest keeps accepting an
# old source secret, so that a receiver can switch over without losing a delivery.
PREVIOUS_SECRET_KEPT = timedelta(hours=24)
MAX_ERROR_LENGTH = 500
DISABLED_BY_ADMIN = "disabled by an admin"
RECEIVER_GONE = "the receiver answered 410 Gone"


class WebhookEndpoint(Base):
    """Where a team wants handoff's events pushed, and the secret that signs them."""

    __tablename__ = "webhook_endpoints"

    team: Mapped[str] = mapped_column(String(100), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON(none_as_null=True))
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery sent at ``now`` is signed with: the current one, and the previous one for a while."""
        if self.previous_secret is not None and self.previous_secret_until is not None:
            if now < self.previous_secret_until:
                return [self.secret, self.previous_secret]
        return [self.secret]

    def described(self) -> dict[str, Any]:
        """The endpoint as the audit log keeps it: never its secrets."""
        return {"team": self.team, "url": self.url, "events": list(self.events), "enabled": self.enabled}


class WebhookDelivery(Base):
    """One event to push to one team's endpoint, and how its attempts went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # One delivery per event and endpoint, however often the event is redelivered.
        UniqueConstraint("team", "event_id", name="uq_webhook_deliveries_team_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_team_seq", "team", "seq"),
        Index("ix_webhook_deliveries_lead_id", "lead_id"),  # an erasure finds a lead's deliveries
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    team: Mapped[str] = mapped_column(String(100), ForeignKey("webhook_endpoints.team", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(255))
    lead_id: Mapped[str] = mapped_column(String(64))
    assignment_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(MAX_ERROR_LENGTH))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form ``whsec_<base64 of 32 random bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def retry_delay(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt before the next one."""
    base = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return base * (rng or random).uniform(1 - JITTER, 1 + JITTER)


def signature_headers(*, delivery_id: str, payload: str, secrets_: Sequence[str], sent_at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers for one send: one ``v1,`` signature per secret, space-separated."""
    signatures = " ".join(Webhook(secret).sign(delivery_id, sent_at, payload) for secret in secrets_)
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signatures,
    }


# The endpoints (admin)


async def get_endpoint(session: AsyncSession, *, team: str, for_update: bool = False) -> WebhookEndpoint:
    """A team's endpoint; NotFound if it has none."""
    query = select(WebhookEndpoint).where(WebhookEndpoint.team == team)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    endpoint = await session.scalar(query)
    if endpoint is None:
        raise NotFound(f"team {team} has no webhook")
    return endpoint


async def put_endpoint(
    session: AsyncSession, *, team: str, url: str, events: Sequence[str], enabled: bool, now: datetime
) -> tuple[WebhookEndpoint, dict[str, Any] | None]:
    """Creates or replaces a team's endpoint; returns it and what it was before (None when this created it)."""
    endpoint = await session.scalar(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.team == team)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if endpoint is None:
        insert = insert_for(session)
        # Two admins creating the same team's endpoint at once: the later one replaces what the first made.
        created = await session.scalar(
            insert(WebhookEndpoint)
            .values(
                team=team,
                url=url,
                events=list(events),
                enabled=enabled,
                disabled_reason=None if enabled else DISABLED_BY_ADMIN,
                secret=new_secret(),
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=[WebhookEndpoint.team])
            .returning(WebhookEndpoint.team)
        )
        endpoint = await get_endpoint(session, team=team, for_update=True)
        if created is not None:
            return endpoint, None
    before = endpoint.described()
    endpoint.url = url
    endpoint.events = list(events)
    if enabled != endpoint.enabled:
        endpoint.disabled_reason = None if enabled else DISABLED_BY_ADMIN
    endpoint.enabled = enabled
    endpoint.updated_at = now
    await session.flush()
    return endpoint, before


async def rotate_secret(session: AsyncSession, *, team: str, now: datetime) -> WebhookEndpoint:
    """Gives a team's endpoint a new secret; the old one keeps signing beside it for a while."""
    endpoint = await get_endpoint(session, team=team, for_update=True)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + PREVIOUS_SECRET_KEPT
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, *, team: str) -> WebhookEndpoint:
    """Removes a team's endpoint and its delivery log."""
    endpoint = await get_endpoint(session, team=team, for_update=True)
    await session.delete(endpoint)
    await session.flush()
    return endpoint


async def list_deliveries(
    session: AsyncSession, *, team: str, status: str | None, before: int | None, limit: int
) -> Sequence[WebhookDelivery]:
    """A team's deliveries, newest first, older than position ``before``, optionally of one status."""
    query = select(WebhookDelivery).where(WebhookDelivery.team == team).order_by(WebhookDelivery.seq.desc())
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before is not None:
        query = query.where(WebhookDelivery.seq < before)
    return (await session.scalars(query.limit(limit))).all()


# Queueing deliveries: the handoff-webhooks consumer group


async def queue_delivery(
    session: AsyncSession,
    *,
    event: Incoming[EventData],
    team: str | None,
    assignment_id: str | None,
) -> bool:
    """Queues the event for the team's endpoint if it has an enabled one subscribed to it; True if queued."""
    data = event.data
    event_type = data.event_type
    if team is None or event_type not in (await _subscriptions(session)).get(team, ()):
        return False
    if (
        isinstance(data, LeadStatusChanged)
        and data.reason != anonymous_reason(data.status, data.reason)
        and await ERASED_LEADS.holds(session, data.lead_id)
    ):
        # Published before its lead was erased and queued after: it goes out as anonymous as those queued before.
        data = data.model_copy(update={"reason": None})
    envelope = CloudEvent(
        id=event.id,
        source=event.source,
        type=event_type,
        time=event.time,
        subject=data.lead_id,
        data=data.model_dump(mode="json"),
    )
    insert = insert_for(session)
    result = await session.execute(
        insert(WebhookDelivery)
        .values(
            id=new_id(),
            team=team,
            event_id=event.id,
            event_type=event_type,
            lead_id=data.lead_id,
            assignment_id=assignment_id,
            payload=envelope.model_dump_json(),
            status=PENDING,
            attempts=0,
            next_attempt_at=event.now,
            created_at=event.now,
            updated_at=event.now,
        )
        .on_conflict_do_nothing(index_elements=[WebhookDelivery.team, WebhookDelivery.event_id])
    )
    return bool(getattr(result, "rowcount", 0))


_SUBSCRIPTIONS_KEY = "baton_handoff_webhook_subscriptions"


async def _subscriptions(session: AsyncSession) -> dict[str, frozenset[str]]:
    """The event types each team's enabled endpoint takes, read once per transaction (a batch)."""
    transaction = session.sync_session.get_transaction()
    cached: tuple[object, dict[str, frozenset[str]]] | None = session.info.get(_SUBSCRIPTIONS_KEY)
    if cached is not None and cached[0] is transaction:
        return cached[1]
    rows = await session.execute(
        select(WebhookEndpoint.team, WebhookEndpoint.events).where(WebhookEndpoint.enabled.is_(True))
    )
    subscriptions = {team: frozenset(events) for team, events in rows}
    session.info[_SUBSCRIPTIONS_KEY] = (transaction, subscriptions)
    return subscriptions


async def _team_of_assignment(session: AsyncSession, assignment_id: str) -> str | None:
    return await session.scalar(select(Assignment.team).where(Assignment.id == assignment_id))


async def _team_of_lead(session: AsyncSession, lead_id: str) -> str | None:
    latest = select(Assignment.team).where(Assignment.lead_id == lead_id).order_by(Assignment.seq.desc()).limit(1)
    return await session.scalar(latest)


async def on_lead_assigned(event: Incoming[LeadAssigned], session: AsyncSession) -> None:
    """Queues a new assignment for its team's webhook."""
    await queue_delivery(session, event=event, team=event.data.team, assignment_id=event.data.assignment_id)


async def on_lead_status_changed(event: Incoming[LeadStatusChanged], session: AsyncSession) -> None:
    """Queues a status change for its team's webhook."""
    await queue_delivery(session, event=event, team=event.data.team, assignment_id=event.data.assignment_id)


async def on_sla_breached(event: Incoming[SlaBreached], session: AsyncSession) -> None:
    """Queues a breach for the webhook of the breached assignment's team."""
    if not await _subscriptions(session):
        return  # nobody takes webhooks: no need to find the team
    team = await _team_of_assignment(session, event.data.assignment_id)
    await queue_delivery(session, event=event, team=team, assignment_id=event.data.assignment_id)


async def on_lead_recycled(event: Incoming[LeadRecycled], session: AsyncSession) -> None:
    """Queues a recycled lead for the webhook of the team of its latest assignment."""
    if not await _subscriptions(session):
        return  # nobody takes webhooks: no need to find the team
    await queue_delivery(
        session, event=event, team=await _team_of_lead(session, event.data.lead_id), assignment_id=None
    )


def delivery_handlers() -> dict[str, EventHandler]:
    """The handoff-webhooks consumer group's handlers: they queue deliveries and send nothing."""
    return handlers(on_lead_assigned, on_lead_status_changed, on_sla_breached, on_lead_recycled)


# Sending: the worker


@dataclass(frozen=True)
class _Claimed:
    delivery_id: str
    attempt: int
    team: str
    url: str
    payload: str
    secrets: list[str]


@dataclass(frozen=True)
class _Outcome:
    claimed: _Claimed
    status_code: int | None
    error: str | None


async def deliver_due(sessions: async_sessionmaker[AsyncSession], *, client: httpx.AsyncClient, clock: Clock) -> int:
    """Sends the deliveries due now, up to DELIVERIES_PER_PASS, and records how each went; returns how many."""
    claimed = await _claim_due(sessions, now=clock())
    if not claimed:
        return 0
    outcomes = await asyncio.gather(*(_send(client, delivery, sent_at=clock()) for delivery in claimed))
    await _record(sessions, outcomes, now=clock())
    return len(claimed)


def delivery_client() -> httpx.AsyncClient:
    """The HTTP client deliveries go out with: short timeouts, redirects not followed (a 3xx is a failure)."""
    return httpx.AsyncClient(timeout=REQUEST_TIMEOUT, follow_redirects=False)


async def deliver_webhooks(runtime: ServiceRuntime) -> None:
    """Sends due webhook deliveries until the service stops (safe with several replicas)."""
    async with delivery_client() as client:
        while True:
            if await deliver_due(runtime.sessions, client=client, clock=runtime.clock) < DELIVERIES_PER_PASS:
                await asyncio.sleep(POLL_SECONDS)


async def _claim_due(sessions: async_sessionmaker[AsyncSession], *, now: datetime) -> list[_Claimed]:
    # Claimed in a short transaction of its own: a row lock held through a send would hold a connection
    # for as long as the slowest receiver takes. SKIP LOCKED lets replicas claim side by side; the lease
    # keeps a claimed row from being due again while it is being sent.
    async with sessions() as session, session.begin():
        enabled = select(WebhookEndpoint.team).where(WebhookEndpoint.enabled.is_(True))
        due = (
            await session.scalars(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.status == PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    WebhookDelivery.team.in_(enabled),
                )
                .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.seq)
                .limit(DELIVERIES_PER_PASS)
                .with_for_update(skip_locked=True, of=WebhookDelivery)
            )
        ).all()
        if not due:
            return []
        endpoints = {
            endpoint.team: endpoint
            for endpoint in await session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.team.in_({d.team for d in due}))
            )
        }
        claimed: list[_Claimed] = []
        for delivery in due:
            delivery.attempts += 1
            delivery.next_attempt_at = now + CLAIM_LEASE
            delivery.updated_at = now
            endpoint = endpoints[delivery.team]
            claimed.append(
                _Claimed(
                    delivery_id=delivery.id,
                    attempt=delivery.attempts,
                    team=delivery.team,
                    url=endpoint.url,
                    payload=delivery.payload,
                    secrets=endpoint.signing_secrets(now),
                )
            )
        return claimed


async def _send(client: httpx.AsyncClient, delivery: _Claimed, *, sent_at: datetime) -> _Outcome:
    headers = {
        "content-type": CONTENT_TYPE,
        **signature_headers(
            delivery_id=delivery.delivery_id, payload=delivery.payload, secrets_=delivery.secrets, sent_at=sent_at
        ),
    }
    try:
        # Streamed and never read: only the status matters, and a receiver's body could be any size.
        async with client.stream("POST", delivery.url, content=delivery.payload.encode(), headers=headers) as response:
            return _Outcome(delivery, response.status_code, None)
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return _Outcome(delivery, None, error[:MAX_ERROR_LENGTH])


async def _record(sessions: async_sessionmaker[AsyncSession], outcomes: Sequence[_Outcome], *, now: datetime) -> None:
    async with sessions() as session, session.begin():
        for outcome in outcomes:
            await _record_one(session, outcome, now=now)


async def _record_one(session: AsyncSession, outcome: _Outcome, *, now: datetime) -> None:
    delivery, code = outcome.claimed, outcome.status_code
    delivered = code is not None and 200 <= code < 300
    error = outcome.error if code is None else None if delivered else f"the receiver answered {code}"
    changes: dict[str, Any] = {"last_status_code": code, "last_error": error, "updated_at": now}
    if delivered:
        changes.update(status=DELIVERED, delivered_at=now, next_attempt_at=None)
    elif code == 410 or delivery.attempt >= MAX_ATTEMPTS:
        changes.update(status=FAILED, next_attempt_at=None)
    else:
        changes.update(next_attempt_at=now + retry_delay(delivery.attempt))
    # Only the claim that made this attempt records it: had its lease run out and another replica
    # claimed the delivery again, the attempt count no longer matches.
    recorded = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery.delivery_id,
            WebhookDelivery.attempts == delivery.attempt,
            WebhookDelivery.status == PENDING,
        )
        .values(**changes)
    )
    if delivered or not getattr(recorded, "rowcount", 0):
        return
    extra = {"team": delivery.team, "delivery_id": delivery.delivery_id, "attempt": delivery.attempt}
    if code == 410:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.team == delivery.team)
            .values(enabled=False, disabled_reason=RECEIVER_GONE, updated_at=now)
        )
        logger.warning("webhook receiver is gone; its endpoint is disabled", extra=extra)
    else:
        logger.info("webhook delivery failed", extra={**extra, "status_code": code, "error": error})


async def forget_old_deliveries(session: AsyncSession, now: datetime, settings: Settings) -> int:
    """Deletes finished deliveries (delivered or failed) older than their retention; returns how many."""
    retention = settings if isinstance(settings, HandoffSettings) else HandoffSettings()
    result = await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status.in_((DELIVERED, FAILED)),
            WebhookDelivery.updated_at < now - timedelta(days=retention.webhook_delivery_retention_days),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
