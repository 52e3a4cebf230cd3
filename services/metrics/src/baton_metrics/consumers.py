"""metrics' event handlers: every event counted once, by day × source × campaign × team × rep.

Each event carries the dimensions it is counted by, so counts are right whatever order the
topics are read in (Kafka orders a lead's events within a topic, not across topics).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from baton.consumer import Incoming, handlers
from baton.events import LeadAssigned, LeadQualified, LeadReceived, LeadStatusChanged
from baton_metrics.models import KpiCounter

UNKNOWN = ""


async def count(
    session: AsyncSession,
    *,
    kpi: str,
    at: datetime,
    source: str | None,
    campaign: str | None,
    team: str | None = None,
    rep_id: str | None = None,
    amount: Decimal | None = None,
) -> None:
    """Adds one to a KPI's running total (and ``amount`` to its sum), in the event's transaction."""
    values = {
        "day": at.date(),
        "source": source or UNKNOWN,
        "campaign": campaign or UNKNOWN,
        "team": team or UNKNOWN,
        "rep_id": rep_id or UNKNOWN,
        "kpi": kpi,
        "count": 1,
        "amount": amount or Decimal(0),
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(KpiCounter).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["day", "source", "campaign", "team", "rep_id", "kpi"],
        set_={"count": KpiCounter.count + 1, "amount": KpiCounter.amount + values["amount"]},
    )
    await session.execute(statement)


async def on_lead_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    """Counts a received lead."""
    data = event.data
    await count(session, kpi="received", at=data.received_at, source=data.source, campaign=data.campaign)


async def on_lead_qualified(event: Incoming[LeadQualified], session: AsyncSession) -> None:
    """Counts an MQL."""
    data = event.data
    await count(session, kpi="mql", at=event.time, source=data.lead.source, campaign=data.lead.campaign)


async def on_lead_assigned(event: Incoming[LeadAssigned], session: AsyncSession) -> None:
    """Counts an assignment for its team and rep."""
    data = event.data
    await count(
        session,
        kpi="assigned",
        at=event.time,
        source=data.source,
        campaign=data.campaign,
        team=data.team,
        rep_id=data.rep_id,
    )


async def on_status_changed(event: Incoming[LeadStatusChanged], session: AsyncSession) -> None:
    """Counts accepted, rejected, contacted, qualified, won (with amount) and lost."""
    data = event.data
    await count(
        session,
        kpi=data.status,
        at=data.occurred_at,
        source=data.source,
        campaign=data.campaign,
        team=data.team,
        rep_id=data.rep_id,
        amount=data.amount if data.status == "won" else None,
    )


HANDLERS = handlers(on_lead_received, on_lead_qualified, on_lead_assigned, on_status_changed)
