"""metrics' event handlers: every event of the system applied to the read model exactly once.

Each handler records its event in the consumer's transaction; ``service`` applies the transaction's
events together just before it commits with the inbox rows (see ``readmodel`` for what each event
counts, measures and keeps). Each event carries the dimensions it is counted by, or finds them on
its assignment or lead, so counts are right whatever order the topics are read in.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import Incoming, handlers
from baton.events import (
    LeadActivity,
    LeadAssigned,
    LeadErased,
    LeadQualified,
    LeadReceived,
    LeadRecycled,
    LeadScored,
    LeadStatusChanged,
    LeadUpdated,
    SlaBreached,
)
from baton_metrics.service import record_event


async def on_lead_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    """Counts a received lead and starts its journey and pipeline clock."""
    record_event(session, event)


async def on_lead_updated(event: Incoming[LeadUpdated], session: AsyncSession) -> None:
    """Adds a merged duplicate (the names of the fields it changed) to the lead's journey."""
    record_event(session, event)


async def on_lead_activity(event: Incoming[LeadActivity], session: AsyncSession) -> None:
    """Adds an engagement to the lead's journey."""
    record_event(session, event)


async def on_lead_erased(event: Incoming[LeadErased], session: AsyncSession) -> None:
    """Deletes the lead's journey; its counts stay."""
    record_event(session, event)


async def on_lead_scored(event: Incoming[LeadScored], session: AsyncSession) -> None:
    """Times the received → scored step and adds the score to the journey."""
    record_event(session, event)


async def on_lead_qualified(event: Incoming[LeadQualified], session: AsyncSession) -> None:
    """Counts an MQL and times the scored → qualified step."""
    record_event(session, event)


async def on_lead_assigned(event: Incoming[LeadAssigned], session: AsyncSession) -> None:
    """Counts an assignment for its team and rep and starts its SLA clocks."""
    record_event(session, event)


async def on_status_changed(event: Incoming[LeadStatusChanged], session: AsyncSession) -> None:
    """Counts accepted … lost (won with its amount, rejected by reason), SLAs met and the reps' speed."""
    record_event(session, event)


async def on_sla_breached(event: Incoming[SlaBreached], session: AsyncSession) -> None:
    """Counts a breached SLA and the reassignment or escalation it caused."""
    record_event(session, event)


async def on_lead_recycled(event: Incoming[LeadRecycled], session: AsyncSession) -> None:
    """Counts a lead sent back to nurture."""
    record_event(session, event)


HANDLERS = handlers(
    on_lead_received,
    on_lead_updated,
    on_lead_activity,
    on_lead_erased,
    on_lead_scored,
    on_lead_qualified,
    on_lead_assigned,
    on_status_changed,
    on_sla_breached,
    on_lead_recycled,
)
