"""Right to erasure: a lead whose person asked to be forgotten keeps only what identifies nobody.

Its assignments stay, with their statuses, reps, teams and deadlines (the anonymous history the counts
and rotations rest on), but the lead snapshot keeps only the attributes routing tests that name nobody,
the routing decision loses every personal value it quoted, and a sales rep's free-text reasons go. An
open or queued assignment of the lead is closed as lost (reason ``erased``). A tombstone keeps a
``lead.qualified`` that arrives later (another topic, so it can) from routing the lead again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from baton.db import insert_for
from baton.events import CloudEvent, LeadStatusChanged
from baton.outbox import OutboxEntry
from baton_handoff import routing, service
from baton_handoff.domain import LEAD_HOLDING_STATUSES, anonymous_reason
from baton_handoff.models import ERASED_LEADS, Assignment, ErasedLead
from baton_handoff.webhooks import WebhookDelivery

ANONYMOUS_ATTRIBUTES = ("country", "company_size", "industry", "source", "campaign", "score", "fit_grade")
"""What an erased lead's snapshot keeps, besides its e-mail domain: routing attributes that identify nobody."""
PERSONAL_ATTRIBUTES = ("email", "first_name", "last_name", "phone", "title", "company", "external_id")
REDACTED = "[erased]"


def anonymised_lead(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The lead snapshot with only its anonymous routing attributes and e-mail domain."""
    kept = {name: lead[name] for name in ANONYMOUS_ATTRIBUTES if name in lead}
    domain = routing.lead_attributes(lead).get("email_domain")
    if domain:
        kept["email_domain"] = domain
    return kept


def personal_values(leads: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """Every personal value the lead snapshots hold: what must not be quoted anywhere else either."""
    values: set[str] = set()
    for lead in leads:
        values.update(str(lead[name]) for name in PERSONAL_ATTRIBUTES if lead.get(name) not in (None, ""))
        utm = lead.get("utm")
        if isinstance(utm, Mapping):
            values.update(str(value) for value in utm.values() if value not in (None, ""))
    return frozenset(values)


def redacted(value: Any, personal: frozenset[str]) -> Any:
    """A copy of a JSON value in which every quoted personal value, standing as a word of its own, is ``[erased]``."""
    if not personal:
        return value
    # Longest first, so that a value containing another is redacted whole.
    pattern = re.compile(
        "|".join(rf"(?<!\w){re.escape(item)}(?!\w)" for item in sorted(personal, key=len, reverse=True))
    )
    return _redact(value, pattern)


def _redact(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {key: _redact(item, pattern) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, pattern) for item in value]
    return value


async def erase_lead(session: AsyncSession, *, lead_id: str, now: datetime) -> int:
    """Forgets a lead's personal data, closes its open or queued assignment, keeps a tombstone; returns how many closed.

    Erasing a lead twice, or one handoff never saw, changes nothing more than the first erasure did.
    """
    # Locked before the routing lock, as the SLA scheduler does, so the two never wait on each other in a circle.
    await _lock_assignments_of(session, lead_id)
    await service.hold_routing_lock(session)
    # A routing that held the lock until now may have committed an assignment of the lead: read them again.
    assignments = await _lock_assignments_of(session, lead_id)
    await session.execute(
        insert_for(session)(ErasedLead)
        .values(lead_id=lead_id, erased_at=now)
        .on_conflict_do_nothing(index_elements=[ErasedLead.lead_id])
    )
    ERASED_LEADS.add(session, lead_id)
    closing = [assignment for assignment in assignments if assignment.status in LEAD_HOLDING_STATUSES]
    for assignment in closing:
        await service.close_as_erased(session, assignment=assignment, now=now)
    personal = personal_values(assignment.lead for assignment in assignments)
    for assignment in assignments:
        assignment.lead = anonymised_lead(assignment.lead)
        assignment.decision = redacted(assignment.decision, personal)
        if assignment not in closing:
            assignment.reason = anonymous_reason(assignment.status, assignment.reason)
    await _scrub_stored_events(
        session, key=WebhookDelivery.id, payload=WebhookDelivery.payload, lead=WebhookDelivery.lead_id, lead_id=lead_id,
        personal=personal,
    )  # fmt: skip
    # An event still waiting to be published goes out as anonymous as the rest.
    await _scrub_stored_events(
        session, key=OutboxEntry.id, payload=OutboxEntry.payload, lead=OutboxEntry.aggregate_id, lead_id=lead_id,
        personal=personal,
    )  # fmt: skip
    return len(closing)


async def _lock_assignments_of(session: AsyncSession, lead_id: str) -> Sequence[Assignment]:
    return (
        await session.scalars(
            select(Assignment)
            .where(Assignment.lead_id == lead_id)
            .order_by(Assignment.seq)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()


async def _scrub_stored_events(
    session: AsyncSession,
    *,
    key: InstrumentedAttribute[Any],
    payload: InstrumentedAttribute[str],
    lead: InstrumentedAttribute[str],
    lead_id: str,
    personal: frozenset[str],
) -> None:
    """Rewrites a lead's stored CloudEvents (the ``payload`` column of a table keyed by ``key``) as anonymous ones."""
    for row_key, stored in (await session.execute(select(key, payload).where(lead == lead_id))).all():
        scrubbed = anonymous_payload(stored, personal)
        if scrubbed != stored:
            await session.execute(update(key.class_).where(key == row_key).values({payload: scrubbed}))


def anonymous_payload(payload: str, personal: frozenset[str]) -> str:
    """A stored CloudEvent (JSON) without a free-text reason or any quoted personal value; unchanged if it had none."""
    envelope = CloudEvent.model_validate_json(payload)
    data = redacted(envelope.data, personal)
    if envelope.type == LeadStatusChanged.event_type:
        data = {**data, "reason": anonymous_reason(str(data.get("status")), data.get("reason"))}
    if data == envelope.data:
        return payload
    return envelope.model_copy(update={"data": data}).model_dump_json()
