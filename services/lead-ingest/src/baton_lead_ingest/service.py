"""Turning posted leads into stored leads and events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.events import LeadReceived, LeadUpdated, new_id
from baton.outbox import add_event
from baton_lead_ingest.models import Lead
from baton_lead_ingest.schemas import LeadAccepted, LeadIn

_PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "company",
    "title",
    "phone",
    "country",
    "company_size",
    "industry",
    "source",
    "campaign",
    "external_id",
)


def normalise_email(email: str) -> str:
    """Returns the form of an address that identifies one person: trimmed and lower-case."""
    return email.strip().lower()


def changed_fields(lead: Lead, incoming: LeadIn) -> dict[str, Any]:
    """Returns the profile fields a duplicate post brings that differ from what is stored."""
    changes: dict[str, Any] = {}
    for name in _PROFILE_FIELDS:
        value = getattr(incoming, name)
        if value is not None and value != getattr(lead, name):
            changes[name] = value
    merged_utm = {**lead.utm, **incoming.utm}
    if merged_utm != lead.utm:
        changes["utm"] = merged_utm
    return changes


async def receive_lead(session: AsyncSession, *, incoming: LeadIn, now: datetime) -> LeadAccepted:
    """Stores a new lead or merges a known person's post into their lead, and queues the event."""
    email_normalized = normalise_email(incoming.email)
    lead = await session.scalar(select(Lead).where(Lead.email_normalized == email_normalized))
    if lead is None:
        lead = Lead(
            id=new_id(),
            email_normalized=email_normalized,
            email=incoming.email,
            utm=incoming.utm,
            created_at=now,
            updated_at=now,
            **{name: getattr(incoming, name) for name in _PROFILE_FIELDS},
        )
        session.add(lead)
        add_event(
            session,
            LeadReceived(
                lead_id=lead.id,
                email=lead.email,
                utm=lead.utm,
                activities=incoming.activities,
                received_at=now,
                **{name: getattr(incoming, name) for name in _PROFILE_FIELDS},
            ),
        )
        return LeadAccepted(lead_id=lead.id, duplicate=False)
    changes = changed_fields(lead, incoming)
    for name, value in changes.items():
        setattr(lead, name, value)
    lead.updated_at = now
    add_event(
        session,
        LeadUpdated(lead_id=lead.id, changed=changes, activities=incoming.activities, updated_at=now),
    )
    return LeadAccepted(lead_id=lead.id, duplicate=True)
