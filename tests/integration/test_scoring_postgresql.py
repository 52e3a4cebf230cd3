"""scoring on PostgreSQL with two consumers at once: two crossings of one lead applied concurrently qualify it
once, and neither loses the other's activity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.consumer import EventConsumer
from baton.db import create_engine, create_sessionmaker, migrate
from baton.events import CloudEvent, EventData, LeadActivity, LeadQualified, LeadReceived
from baton.outbox import SOURCE_KEY, OutboxEntry
from baton_scoring.consumers import HANDLERS
from baton_scoring.models import LeadScore, MqlOutcome

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def engine(fresh_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(await fresh_database("scoring"))
    await migrate(engine, "baton_scoring:migrations")
    yield engine
    await engine.dispose()


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    log = EmbeddedLog(tmp_path / "bus.db")  # only for the dead-letter queue, which must stay empty
    await log.start()
    yield log
    await log.stop()


def consumer(sessions: async_sessionmaker[AsyncSession], log: EmbeddedLog) -> EventConsumer:
    return EventConsumer(group="scoring", handlers=HANDLERS, bus=log, sessions=sessions, retry_pause_seconds=0)


def records(*events: EventData) -> list[Record]:
    return [Record.from_event(CloudEvent.wrap(e, source="/baton/lead-ingest")) for e in events]


def activity(kind: str, *, hours: float) -> LeadActivity:
    return LeadActivity(lead_id="l1", activity_type=kind, occurred_at=T0 + timedelta(hours=hours))


async def test_two_crossings_applied_at_once_qualify_the_lead_once_and_keep_both_activities(
    engine: AsyncEngine, log: EmbeddedLog
) -> None:
    sessions = create_sessionmaker(engine, **{SOURCE_KEY: "/baton/scoring"})
    first, second = consumer(sessions, log), consumer(sessions, log)
    lead = LeadReceived(
        lead_id="l1", email="pat@acme.example", title="Marketing Manager", company_size=300, received_at=T0
    )
    await first.on_batch(records(lead, activity("webinar_attended", hours=1)))

    # Either crossing alone makes an MQL: 40 points at the threshold, or a demo request.
    for _ in range(5):
        await asyncio.gather(
            first.on_batch(records(activity("webinar_attended", hours=2))),
            second.on_batch(records(activity("demo_request", hours=2))),
        )

    async with sessions() as session:
        qualified = (
            await session.scalars(select(OutboxEntry.id).where(OutboxEntry.type == LeadQualified.event_type))
        ).all()
        outcomes = (await session.scalars(select(MqlOutcome.cycle))).all()
        row = await session.get(LeadScore, "l1")
    assert len(qualified) == 1
    assert outcomes == [1]
    assert row is not None
    assert sorted(a["type"] for a in row.activities) == ["demo_request"] * 5 + ["webinar_attended"] * 6
