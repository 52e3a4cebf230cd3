"""handoff's event handlers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import EventHandler
from baton.events import CloudEvent, LeadQualified, utcnow
from baton_handoff.service import assign_lead
from baton_handoff.settings import HandoffSettings


def make_handlers(settings: HandoffSettings) -> dict[str, EventHandler]:
    """Builds handoff's handlers around its SLA settings."""

    async def on_lead_qualified(event: CloudEvent, session: AsyncSession) -> None:
        """Routes a new MQL to a rep."""
        data = event.payload()
        assert isinstance(data, LeadQualified)
        await assign_lead(
            session,
            qualified=data,
            now=utcnow(),
            accept_within=settings.accept_within,
            touch_within=settings.touch_within,
        )

    return {LeadQualified.event_type: on_lead_qualified}
