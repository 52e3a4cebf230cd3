"""metrics' event handlers: every event counted once, by UTC day × source × campaign × team × rep.

Each event carries the dimensions it is counted by, so counts are right whatever order the topics
are read in (Kafka orders a lead's events within a topic, not across topics). The counting rules
live in ``domain``; the counts join the consumer's transaction and commit with its inbox rows.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import Incoming, handlers
from baton.events import LeadAssigned, LeadQualified, LeadReceived, LeadStatusChanged
from baton_metrics.domain import count_assigned, count_qualified, count_received, count_status_change
from baton_metrics.service import add_count


async def on_lead_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    """Counts a received lead."""
    add_count(session, count_received(event.data))


async def on_lead_qualified(event: Incoming[LeadQualified], session: AsyncSession) -> None:
    """Counts an MQL."""
    add_count(session, count_qualified(event.data, time=event.time))


async def on_lead_assigned(event: Incoming[LeadAssigned], session: AsyncSession) -> None:
    """Counts an assignment for its team and rep."""
    add_count(session, count_assigned(event.data, time=event.time))


async def on_status_changed(event: Incoming[LeadStatusChanged], session: AsyncSession) -> None:
    """Counts accepted, rejected, contacted, qualified, won (with its amount) and lost."""
    add_count(session, count_status_change(event.data))


HANDLERS = handlers(on_lead_received, on_lead_qualified, on_lead_assigned, on_status_changed)
