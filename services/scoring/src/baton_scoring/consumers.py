"""scoring's event handlers: score what lead-ingest sends, publish lead.scored and lead.qualified, and learn
from handoff what sales did with each MQL (recycled leads start a new cycle; outcomes feed calibration)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import Incoming, LeadSet, batch_lead_ids, handlers
from baton.db import insert_for
from baton.events import (
    Activity,
    CloudEvent,
    LeadActivity,
    LeadErased,
    LeadQualified,
    LeadReceived,
    LeadRecycled,
    LeadScored,
    LeadStatusChanged,
    LeadUpdated,
    RoutingAttributes,
    ScoreLine,
)
from baton.outbox import OutboxEntry, add_event
from baton_scoring import accounts, observability
from baton_scoring.engine import (
    EngagementEvent,
    QualificationReason,
    ScoreResult,
    account_domain,
    engagement_of,
    meets_bar,
    qualifies,
    score,
)
from baton_scoring.model import ScoringModel, stored_model
from baton_scoring.models import ErasedLead, LeadScore, ModelVersion, MqlOutcome, ScoreHistory

logger = logging.getLogger(__name__)

_ROUTING_FIELDS = tuple(RoutingAttributes.model_fields)
# What a lead.qualified not yet published keeps of an erased lead: the attributes that identify nobody.
_ANONYMOUS_ROUTING_FIELDS = frozenset({"country", "company_size", "industry", "source", "campaign"})
ERASED = LeadSet(ErasedLead.lead_id)
"""The erased leads: none of their events is scored again."""
REJECTED_WITHOUT_REASON = "unspecified"
WITHHELD_REASON = "withheld"
"""What calibration keeps of an erased lead's rejection reason, which sales may have written freely."""

_MODEL_IN_FORCE_KEY = "baton_scoring_model_in_force"
_BATCH_LEADS_KEY = "baton_scoring_batch_leads"


async def current_model(session: AsyncSession) -> tuple[int, ScoringModel]:
    """Returns the newest model version and its definition, read once per transaction."""
    transaction = session.sync_session.get_transaction()
    cached: tuple[object, int, ScoringModel] | None = session.info.get(_MODEL_IN_FORCE_KEY)
    if cached is not None and cached[0] is transaction:
        return cached[1], cached[2]
    newest = await session.scalar(select(ModelVersion).order_by(ModelVersion.version.desc()).limit(1))
    if newest is None:
        raise RuntimeError("no scoring model: migrations seed versions 1 and 2")
    model = stored_model(newest.definition)
    session.info[_MODEL_IN_FORCE_KEY] = (transaction, newest.version, model)
    return newest.version, model


@dataclass
class _BatchLeads:
    """The scores of the batch's leads, read and locked together, by lead id (None: no score yet)."""

    transaction: object
    leads: dict[str, LeadScore | None] = field(default_factory=dict)


async def _lead_score(session: AsyncSession, lead_id: str) -> LeadScore | None:
    """The lead's score row, locked for the transaction; the first call in a batch reads and locks the rows of
    every lead of the batch with one statement, in lead-id order, rather than one statement per event."""
    transaction = session.sync_session.get_transaction()
    book: _BatchLeads | None = session.info.get(_BATCH_LEADS_KEY)
    if book is None or book.transaction is not transaction:
        book = session.info[_BATCH_LEADS_KEY] = _BatchLeads(transaction)
    if lead_id not in book.leads:
        wanted = (batch_lead_ids(session) - book.leads.keys()) | {lead_id}
        book.leads.update(dict.fromkeys(wanted))
        rows = await session.scalars(
            select(LeadScore).where(LeadScore.lead_id.in_(wanted)).order_by(LeadScore.lead_id).with_for_update()
        )
        book.leads.update((lead.lead_id, lead) for lead in rows)
    lead = book.leads[lead_id]
    if lead is None or lead in session:
        return lead
    # Gone from the session since it was read (erased by this transaction): the database says what is left.
    book.leads[lead_id] = lead = await session.get(LeadScore, lead_id, with_for_update=True)
    return lead


def _scored_first_time(session: AsyncSession, lead: LeadScore) -> None:
    book: _BatchLeads | None = session.info.get(_BATCH_LEADS_KEY)
    if book is not None and book.transaction is session.sync_session.get_transaction():
        book.leads[lead.lead_id] = lead


def engagement_events(rows: list[dict[str, Any]]) -> list[EngagementEvent]:
    """A lead's stored activities as the engine reads them."""
    return [EngagementEvent(row["type"], datetime.fromisoformat(row["occurred_at"])) for row in rows]


def breakdown_rows(result: ScoreResult) -> list[dict[str, Any]]:
    """A score's breakdown as stored and shown: every rule that fired, its exact points, and its value."""
    return [
        {"rule": line.rule, "kind": line.kind, "points": line.points, "value": line.value} for line in result.breakdown
    ]


def _qualification(
    model: ScoringModel,
    lead: LeadScore,
    result: ScoreResult,
    activities: list[EngagementEvent],
    before: tuple[int, str] | None,
) -> QualificationReason | None:
    """Whether this scoring makes the lead an MQL in its current cycle, and why.

    In a lead's first cycle that is the model's decision. A lead recycled by sales qualifies again only by
    raising its hand after it came back, or by crossing the threshold from below: a score that stayed high
    does not send it straight back to the sales team that just returned it.

    A lead already an MQL of its cycle is not one again. Its row is this transaction's until it commits —
    read ``FOR UPDATE`` with its batch (or by the recycle's or the rescore's own statement), or inserted by
    it, which the primary key makes one transaction's only — so the status seen here is the database's: a
    redelivered or concurrent crossing applied after this one commits finds the cycle already qualified.
    """
    if lead.status != "nurture":
        return None
    if lead.cycle <= 1 or lead.cycle_started_at is None:
        return qualifies(model, result)
    started = lead.cycle_started_at
    raised_again = any(a.type in model.hand_raisers and a.occurred_at >= started for a in activities)
    reason = qualifies(model, replace(result, hand_raised=raised_again))
    if reason == "threshold" and before is not None and meets_bar(model, *before):
        return None
    return reason


async def apply_score(session: AsyncSession, lead: LeadScore, *, at: datetime, cause: str) -> bool:
    """Scores a lead under the model in force as of ``at``; publishes lead.scored if the score or grade changed
    or the lead became an MQL of its cycle, and then lead.qualified. Returns whether the score or grade changed.

    ``at`` is the time of the event being applied, never the clock, and never earlier than the time the
    lead's score is already as of, so replaying the same events gives the same scores.
    """
    started = time.perf_counter()
    version, model = await current_model(session)
    if lead.scored_at is not None and lead.scored_at > at:
        at = lead.scored_at
    activities = engagement_events(lead.activities)
    domain = account_domain(model, lead.attributes)
    own = engagement_of(model, activities, at)
    account = await accounts.move(
        session, lead, model_version=version, model=model, domain=domain, engagement=own, at=at
    )
    result = score(model, lead.attributes, activities, account_engagement=account, at=at)
    is_new = lead.model_version is None
    before = None if is_new else (lead.score, lead.fit_grade)
    changed = before != (result.score, result.grade)
    breakdown = breakdown_rows(result)
    lead.account_domain = domain
    lead.score, lead.fit_grade, lead.engagement = result.score, result.grade, result.engagement
    lead.engagement_exact = own
    lead.breakdown, lead.model_version, lead.scored_at = breakdown, version, at
    if is_new:
        session.add(lead)
        _scored_first_time(session, lead)
    if changed:
        session.add(
            ScoreHistory(
                lead_id=lead.lead_id,
                score=result.score,
                fit_grade=result.grade,
                engagement=result.engagement,
                breakdown=breakdown,
                model_version=version,
                scored_at=at,
                cause=cause,
            )
        )
    reason = _qualification(model, lead, result, activities, before)
    qualified = reason is not None
    if qualified:
        lead.status, lead.qualified_at = "mql", at
    # An MQL's lead.qualified always follows the lead.scored that made it one, even an unchanged score's
    # (a hand raised), so that what reads the topic sees the score that qualified it just before.
    if changed or qualified:
        add_event(
            session,
            LeadScored(
                lead_id=lead.lead_id,
                score=result.score,
                fit_grade=result.grade,
                engagement=result.engagement,
                breakdown=[ScoreLine(rule=line.rule, points=round(line.points)) for line in result.breakdown],
                model_version=version,
            ),
        )
        observability.scored(session, model_version=version)
    if reason is not None:
        await _publish_qualified(session, lead, result, reason, version=version, at=at)
    observability.SCORING_SECONDS.observe(time.perf_counter() - started)
    return changed


async def _publish_qualified(
    session: AsyncSession,
    lead: LeadScore,
    result: ScoreResult,
    reason: QualificationReason,
    *,
    version: int,
    at: datetime,
) -> None:
    """Publishes lead.qualified and keeps what qualified the lead, for calibration."""
    session.add(
        MqlOutcome(
            lead_id=lead.lead_id,
            cycle=lead.cycle,
            score=result.score,
            fit_grade=result.grade,
            reason=reason,
            model_version=version,
            qualified_at=at,
            accepted=False,
            sales_qualified=False,
            won=False,
            updated_at=at,
        )
    )
    add_event(
        session,
        LeadQualified(
            lead_id=lead.lead_id,
            score=result.score,
            fit_grade=result.grade,
            reason=reason,
            lead=RoutingAttributes(**{k: lead.attributes.get(k) for k in _ROUTING_FIELDS}),
        ),
    )
    observability.qualified(session, model_version=version, reason=reason)


def _activity_rows(activities: list[Activity], default_time: datetime, event_id: str) -> list[dict[str, Any]]:
    return [
        {"type": a.type, "occurred_at": (a.occurred_at or default_time).isoformat(), "event_id": f"{event_id}:{i}"}
        for i, a in enumerate(activities)
    ]


def _with_activities(lead: LeadScore, rows: list[dict[str, Any]]) -> bool:
    """Adds activities the lead does not have yet (by the event that carried them); tells whether any was new."""
    known = {row.get("event_id") for row in lead.activities}
    fresh = [row for row in rows if row["event_id"] not in known]
    if fresh:
        lead.activities = [*lead.activities, *fresh]
    return bool(fresh)


def _ignored_as_erased(event: Incoming[Any]) -> None:
    logger.info(
        "event for an erased lead ignored", extra={"lead_id": event.data.lead_id, "event_type": event.data.event_type}
    )


async def on_lead_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    """Scores a new lead as of the time it was received."""
    data = event.data
    if await ERASED.holds(session, data.lead_id):
        _ignored_as_erased(event)  # a replay from the dead-letter queue, say: the person stays forgotten
        return
    if await _lead_score(session, data.lead_id) is not None:
        logger.info("lead received again; already scored", extra={"lead_id": data.lead_id})
        return
    lead = LeadScore(
        lead_id=data.lead_id,
        attributes=data.model_dump(mode="json", include={"email", *_ROUTING_FIELDS}),
        activities=_activity_rows(data.activities, data.received_at, event.id),
        source=data.source,
        campaign=data.campaign,
        received_at=data.received_at,
        status="nurture",
        cycle=1,
    )
    await apply_score(session, lead, at=data.received_at, cause="received")


async def on_lead_updated(event: Incoming[LeadUpdated], session: AsyncSession) -> None:
    """Rescores a lead a duplicate post changed, as of the update."""
    data = event.data
    lead = await _lead_score(session, data.lead_id)
    if lead is None:
        if await ERASED.holds(session, data.lead_id):
            _ignored_as_erased(event)
            return
        raise LookupError(f"lead {data.lead_id} was updated before it was received")
    lead.attributes = {**lead.attributes, **{k: v for k, v in data.changed.items() if k in _ROUTING_FIELDS}}
    lead.source, lead.campaign = lead.attributes.get("source"), lead.attributes.get("campaign")
    _with_activities(lead, _activity_rows(data.activities, data.updated_at, event.id))
    await apply_score(session, lead, at=data.updated_at, cause="updated")


async def on_lead_activity(event: Incoming[LeadActivity], session: AsyncSession) -> None:
    """Rescores a lead that engaged again, as of the activity; the same activity delivered twice counts once."""
    data = event.data
    lead = await _lead_score(session, data.lead_id)
    if lead is None:
        if await ERASED.holds(session, data.lead_id):
            _ignored_as_erased(event)
            return
        raise LookupError(f"activity for lead {data.lead_id} arrived before the lead")
    row = {"type": data.activity_type, "occurred_at": data.occurred_at.isoformat(), "event_id": event.id}
    if not _with_activities(lead, [row]):
        return
    await apply_score(session, lead, at=data.occurred_at, cause="activity")


async def on_lead_recycled(event: Incoming[LeadRecycled], session: AsyncSession) -> None:
    """Sends a lead sales gave back to nurture, in a new cycle in which it can qualify again, and scores it
    as of its return: a hand raised since then (its activity may have come first, on the other topic) counts."""
    lead_id = event.data.lead_id
    recycled = await session.execute(
        update(LeadScore)
        .where(LeadScore.lead_id == lead_id, LeadScore.status == "mql")
        .values(status="nurture", cycle=LeadScore.cycle + 1, cycle_started_at=event.time, qualified_at=None)
        .execution_options(synchronize_session="fetch")
    )
    if getattr(recycled, "rowcount", 0) != 1:
        logger.info("recycled lead not an MQL here; nothing to do", extra={"lead_id": lead_id})
        return
    lead = await session.get(LeadScore, lead_id)
    assert lead is not None
    await apply_score(session, lead, at=event.time, cause="recycled")


async def on_lead_status_changed(event: Incoming[LeadStatusChanged], session: AsyncSession) -> None:
    """Records what sales did with the lead's latest MQL, for calibration."""
    data = event.data
    outcome = await session.scalar(
        select(MqlOutcome).where(MqlOutcome.lead_id == data.lead_id).order_by(MqlOutcome.cycle.desc()).limit(1)
    )
    if outcome is None:
        return  # an MQL from before calibration was kept, or an erased lead's
    match data.status:
        case "accepted" | "contacted":
            outcome.accepted, outcome.rejected_reason = True, None
        case "qualified":
            outcome.accepted, outcome.rejected_reason, outcome.sales_qualified = True, None, True
        case "won":
            outcome.accepted, outcome.rejected_reason, outcome.sales_qualified, outcome.won = True, None, True, True
        case "rejected":
            if not outcome.sales_qualified:
                outcome.accepted = False
                outcome.rejected_reason = (data.reason or REJECTED_WITHOUT_REASON).strip()[:100] or (
                    REJECTED_WITHOUT_REASON
                )
        case "lost":
            return
    outcome.updated_at = data.occurred_at


async def on_lead_erased(event: Incoming[LeadErased], session: AsyncSession) -> None:
    """Forgets a lead's facts and scores, keeping a tombstone, and strips its details from events not yet published."""
    lead_id = event.data.lead_id
    lead = await _lead_score(session, lead_id)
    if lead is not None and lead.model_version is not None:
        version, model = await current_model(session)
        await accounts.leave(session, lead, model_version=version, model=model)
    await session.execute(delete(ScoreHistory).where(ScoreHistory.lead_id == lead_id))
    await session.execute(delete(LeadScore).where(LeadScore.lead_id == lead_id))
    await session.execute(
        insert_for(session)(ErasedLead)
        .values(lead_id=lead_id, erased_at=event.now)
        .on_conflict_do_nothing(index_elements=[ErasedLead.lead_id])
    )
    await session.execute(
        update(MqlOutcome)
        .where(MqlOutcome.lead_id == lead_id, MqlOutcome.rejected_reason.is_not(None))
        .values(rejected_reason=WITHHELD_REASON)
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


HANDLERS = handlers(
    on_lead_received, on_lead_updated, on_lead_activity, on_lead_erased, on_lead_recycled, on_lead_status_changed
)
