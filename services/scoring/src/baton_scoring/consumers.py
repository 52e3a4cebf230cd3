"""scoring's event handlers: score what lead-ingest sends, publish lead.scored and lead.qualified."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import Incoming, LeadSet, handlers
from baton.db import insert_for
from baton.events import (
    Activity,
    CloudEvent,
    LeadActivity,
    LeadErased,
    LeadQualified,
    LeadReceived,
    LeadScored,
    LeadUpdated,
    RoutingAttributes,
)
from baton.outbox import OutboxEntry, add_event
from baton_scoring.domain import EngagementEvent, LeadFacts, ScoringModel, qualification_reason, score_lead
from baton_scoring.models import ErasedLead, LeadScore, ModelVersion, ScoreHistory

logger = logging.getLogger(__name__)

_ROUTING_FIELDS = tuple(RoutingAttributes.model_fields)
# What a lead.qualified not yet published keeps of an erased lead: the attributes that identify nobody.
_ANONYMOUS_ROUTING_FIELDS = frozenset({"country", "company_size", "industry", "source", "campaign"})
ERASED = LeadSet(ErasedLead.lead_id)
"""The erased leads: none of their events is scored again."""


_MODEL_IN_FORCE_KEY = "baton_scoring_model_in_force"


async def current_model(session: AsyncSession) -> tuple[int, ScoringModel]:
    """Returns the newest model version and its definition, read once per transaction."""
    transaction = session.sync_session.get_transaction()
    cached: tuple[object, int, ScoringModel] | None = session.info.get(_MODEL_IN_FORCE_KEY)
    if cached is not None and cached[0] is transaction:
        return cached[1], cached[2]
    newest = await session.scalar(select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1))
    if newest is None:
        raise RuntimeError("no scoring model: migrations seed version 1")
    model = ScoringModel.model_validate(newest.definition)
    session.info[_MODEL_IN_FORCE_KEY] = (session.sync_session.get_transaction(), newest.version, model)
    return newest.version, model


def _facts(attributes: dict[str, Any]) -> LeadFacts:
    email = attributes.get("email") or ""
    return LeadFacts(
        title=attributes.get("title"),
        company_size=attributes.get("company_size"),
        industry=attributes.get("industry"),
        country=attributes.get("country"),
        email_domain=email.rpartition("@")[2].lower() or None,
    )


def _activity_rows(activities: list[Activity], default_time: datetime) -> list[dict[str, Any]]:
    return [{"type": a.type, "occurred_at": (a.occurred_at or default_time).isoformat()} for a in activities]


async def rescore(session: AsyncSession, lead: LeadScore, *, now: datetime) -> None:
    """Scores a lead under the current model, keeps the history and publishes the outcome."""
    version, model = await current_model(session)
    session.add(lead)
    activities = [EngagementEvent(a["type"], datetime.fromisoformat(a["occurred_at"])) for a in lead.activities]
    score = score_lead(model, _facts(lead.attributes), activities, now=now)
    lead.score, lead.fit_grade, lead.engagement = score.score, score.fit_grade, score.engagement
    lead.breakdown = [line.model_dump() for line in score.breakdown]
    lead.model_version, lead.scored_at = version, now
    session.add(
        ScoreHistory(
            lead_id=lead.lead_id, score=score.score, fit_grade=score.fit_grade, model_version=version, scored_at=now
        )
    )
    add_event(
        session,
        LeadScored(
            lead_id=lead.lead_id,
            score=score.score,
            fit_grade=score.fit_grade,
            engagement=score.engagement,
            breakdown=score.breakdown,
            model_version=version,
        ),
    )
    reason = qualification_reason(model, score)
    if reason is not None and lead.status != "mql":
        lead.status, lead.qualified_at = "mql", now
        add_event(
            session,
            LeadQualified(
                lead_id=lead.lead_id,
                score=score.score,
                fit_grade=score.fit_grade,
                reason=reason,
                lead=RoutingAttributes(**{k: lead.attributes.get(k) for k in _ROUTING_FIELDS}),
            ),
        )


def _ignored_as_erased(event: Incoming[Any]) -> None:
    logger.info(
        "event for an erased lead ignored", extra={"lead_id": event.data.lead_id, "event_type": event.data.event_type}
    )


async def on_lead_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    """Scores a new lead."""
    data = event.data
    if await ERASED.holds(session, data.lead_id):
        _ignored_as_erased(event)  # a replay from the dead-letter queue, say: the person stays forgotten
        return
    attributes = data.model_dump(mode="json", include={"email", *_ROUTING_FIELDS})
    lead = LeadScore(
        lead_id=data.lead_id,
        attributes=attributes,
        activities=_activity_rows(data.activities, data.received_at),
        status="nurture",
    )
    await rescore(session, lead, now=event.now)


async def on_lead_updated(event: Incoming[LeadUpdated], session: AsyncSession) -> None:
    """Rescores a lead a duplicate post changed."""
    data = event.data
    lead = await session.get(LeadScore, data.lead_id)
    if lead is None:
        if await ERASED.holds(session, data.lead_id):
            _ignored_as_erased(event)
            return
        raise LookupError(f"lead {data.lead_id} was updated before it was received")
    lead.attributes = {**lead.attributes, **{k: v for k, v in data.changed.items() if k in _ROUTING_FIELDS}}
    lead.activities = [*lead.activities, *_activity_rows(data.activities, data.updated_at)]
    await rescore(session, lead, now=event.now)


async def on_lead_activity(event: Incoming[LeadActivity], session: AsyncSession) -> None:
    """Rescores a lead that engaged again."""
    data = event.data
    lead = await session.get(LeadScore, data.lead_id)
    if lead is None:
        if await ERASED.holds(session, data.lead_id):
            _ignored_as_erased(event)
            return
        raise LookupError(f"activity for lead {data.lead_id} arrived before the lead")
    lead.activities = [*lead.activities, {"type": data.activity_type, "occurred_at": data.occurred_at.isoformat()}]
    await rescore(session, lead, now=event.now)


async def on_lead_erased(event: Incoming[LeadErased], session: AsyncSession) -> None:
    """Forgets a lead's facts and scores, keeping a tombstone, and strips its details from events not yet published."""
    lead_id = event.data.lead_id
    await session.execute(delete(ScoreHistory).where(ScoreHistory.lead_id == lead_id))
    await session.execute(delete(LeadScore).where(LeadScore.lead_id == lead_id))
    await session.execute(
        insert_for(session)(ErasedLead)
        .values(lead_id=lead_id, erased_at=event.now)
        .on_conflict_do_nothing(index_elements=[ErasedLead.lead_id])
    )
    ERASED.add(session, lead_id)
    await _anonymise_waiting_qualifications(session, lead_id)


async def _anonymise_waiting_qualifications(session: AsyncSession, lead_id: str) -> None:
    # The relay publishes within moments, but one may still wait: it goes out without the person's details.
    waiting = await session.execute(
        select(OutboxEntry.id, OutboxEntry.payload).where(
            OutboxEntry.aggregate_id == lead_id, OutboxEntry.type == LeadQualified.event_type
        )
    )
    for entry_id, payload in waiting.all():
        envelope = CloudEvent.model_validate_json(payload)
        qualified = LeadQualified.model_validate(envelope.data)
        kept = qualified.lead.model_dump(include=set(_ANONYMOUS_ROUTING_FIELDS))
        anonymous = qualified.model_copy(update={"lead": RoutingAttributes(**kept)})
        scrubbed = envelope.model_copy(update={"data": anonymous.model_dump(mode="json")})
        await session.execute(
            update(OutboxEntry).where(OutboxEntry.id == entry_id).values(payload=scrubbed.model_dump_json())
        )


HANDLERS = handlers(on_lead_received, on_lead_updated, on_lead_activity, on_lead_erased)
