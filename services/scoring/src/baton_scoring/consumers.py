"""scoring's event handlers: score what lead-ingest sends, publish lead.scored and lead.qualified."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import Incoming, handlers
from baton.events import (
    Activity,
    LeadActivity,
    LeadQualified,
    LeadReceived,
    LeadScored,
    LeadUpdated,
    RoutingAttributes,
)
from baton.outbox import add_event
from baton_scoring.domain import EngagementEvent, LeadFacts, ScoringModel, qualification_reason, score_lead
from baton_scoring.models import LeadScore, ModelVersion, ScoreHistory

_ROUTING_FIELDS = tuple(RoutingAttributes.model_fields)


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


async def on_lead_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    """Scores a new lead."""
    data = event.data
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
        raise LookupError(f"lead {data.lead_id} was updated before it was received")
    lead.attributes = {**lead.attributes, **{k: v for k, v in data.changed.items() if k in _ROUTING_FIELDS}}
    lead.activities = [*lead.activities, *_activity_rows(data.activities, data.updated_at)]
    await rescore(session, lead, now=event.now)


async def on_lead_activity(event: Incoming[LeadActivity], session: AsyncSession) -> None:
    """Rescores a lead that engaged again."""
    data = event.data
    lead = await session.get(LeadScore, data.lead_id)
    if lead is None:
        raise LookupError(f"activity for lead {data.lead_id} arrived before the lead")
    lead.activities = [*lead.activities, {"type": data.activity_type, "occurred_at": data.occurred_at.isoformat()}]
    await rescore(session, lead, now=event.now)


HANDLERS = handlers(on_lead_received, on_lead_updated, on_lead_activity)
