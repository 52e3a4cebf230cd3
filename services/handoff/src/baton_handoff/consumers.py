"""handoff's event handlers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import EventHandler, Incoming, handlers
from baton.events import LeadQualified
from baton_handoff.service import assign_lead
from baton_handoff.settings import HandoffSettings


def make_handlers(settings: HandoffSettings) -> dict[str, EventHandler]:
    """Builds handoff's handlers around its SLA settings."""

    async def on_lead_qualified(event: Incoming[LeadQualified], session: AsyncSession) -> None:
        """Routes a new MQL to a rep."""
        await assign_lead(
            session,
            qualified=event.data,
            now=event.now,
            accept_within=settings.accept_within,
            touch_within=settings.touch_within,
        )

    return handlers(on_lead_qualified)
