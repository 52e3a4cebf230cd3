"""handoff's event handlers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import EventHandler, Incoming, handlers
from baton.events import LeadQualified
from baton_handoff.service import assign_lead
from baton_handoff.settings import HandoffSettings


def make_handlers(settings: HandoffSettings) -> dict[str, EventHandler]:
    """Builds handoff's handlers; the default rule's SLA comes from ``settings`` through the session."""

    async def on_lead_qualified(event: Incoming[LeadQualified], session: AsyncSession) -> None:
        """Routes a new MQL by the routing rules, to a rep or to the fallback queue."""
        qualified = event.data
        # Score and grade are kept with the lead: rules test them, and a simulation replays them.
        lead = {**qualified.lead.model_dump(mode="json"), "score": qualified.score, "fit_grade": qualified.fit_grade}
        await assign_lead(session, lead_id=qualified.lead_id, lead=lead, now=event.now)

    return handlers(on_lead_qualified)
