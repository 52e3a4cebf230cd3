"""metrics' event handlers: every event of the system applied to the read model exactly once.

Each event is recorded in the consumer's transaction; ``service`` applies the transaction's events
together just before it commits with the inbox rows (see ``readmodel`` for what each event counts,
measures and keeps). Each event carries the dimensions it is counted by, or finds them on its
assignment or lead, so counts are right whatever order the topics are read in.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import EventHandler, Incoming
from baton.events import (
    EventData,
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

APPLIED: tuple[type[EventData], ...] = (
    LeadReceived,  # counts a received lead and starts its journey and pipeline clock
    LeadUpdated,  # adds a merged duplicate (the names of the fields it changed) to the lead's journey
    LeadActivity,  # adds an engagement to the lead's journey
    LeadErased,  # deletes the lead's journey; its counts stay
    LeadScored,  # times the received → scored step and adds the score to the journey
    LeadQualified,  # counts an MQL and times the scored → qualified step
    LeadAssigned,  # counts an assignment for its team and rep and starts its SLA clocks
    LeadStatusChanged,  # counts accepted … lost (won with its amount, rejected by reason), SLAs met, reps' speed
    SlaBreached,  # counts a breached SLA and the reassignment or escalation it caused
    LeadRecycled,  # counts a lead sent back to nurture
)
"""The events the read model is made of."""


async def on_event(event: Incoming[EventData], session: AsyncSession) -> None:
    """Records the event in the session's transaction, to be applied to the read model when it commits."""
    record_event(session, event)


HANDLERS: dict[str, EventHandler] = {model.event_type: on_event for model in APPLIED}
