"""handoff's event handlers."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import EventHandler, Incoming, handlers
from baton.events import LeadErased, LeadQualified
from baton_handoff.erasure import erase_lead
from baton_handoff.models import ERASED_LEADS
from baton_handoff.service import assign_lead, hold_routing_lock
from baton_handoff.settings import HandoffSettings

logger = logging.getLogger(__name__)


def make_handlers(settings: HandoffSettings) -> dict[str, EventHandler]:
    """Builds handoff's handlers; the default rule's SLA comes from ``settings`` through the session."""

    async def on_lead_qualified(event: Incoming[LeadQualified], session: AsyncSession) -> None:
        """Routes a new MQL by the routing rules, to a rep or to the fallback queue; an erased lead is not routed."""
        qualified = event.data
        # Asked under the routing lock, which an erasure takes too: an erasure committed before this
        # routing is seen here, and one committed after it sees the assignment this routing makes.
        await hold_routing_lock(session)
        if await ERASED_LEADS.holds(session, qualified.lead_id):
            logger.info("lead.qualified of an erased lead not routed", extra={"lead_id": qualified.lead_id})
            return
        # Score and grade are kept with the lead: rules test them, and a simulation replays them.
        lead = {**qualified.lead.model_dump(mode="json"), "score": qualified.score, "fit_grade": qualified.fit_grade}
        await assign_lead(session, lead_id=qualified.lead_id, lead=lead, now=event.now)

    async def on_lead_erased(event: Incoming[LeadErased], session: AsyncSession) -> None:
        """Forgets an erased lead's personal data and closes its open or queued assignment."""
        closed = await erase_lead(session, lead_id=event.data.lead_id, now=event.now)
        logger.info("lead erased", extra={"lead_id": event.data.lead_id, "assignments_closed": closed})

    return handlers(on_lead_qualified, on_lead_erased)
