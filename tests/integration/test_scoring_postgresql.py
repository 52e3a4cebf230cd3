"""scoring on PostgreSQL with two consumers at once: two crossings of one lead applied concurrently qualify it
once, and neither loses the other's activity; accounts changed by both, and summed afresh meanwhile, stay the
sum of their people and nobody waits for anybody in a circle."""

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
from baton.events import LEADS_INGESTED, CloudEvent, EventData, LeadActivity, LeadQualified, LeadReceived, dlq_topic
from baton.outbox import SOURCE_KEY, OutboxEntry
from baton_scoring import accounts
from baton_scoring.consumers import HANDLERS
from baton_scoring.models import LeadScore, MqlOutcome
from tests.unit.test_scoring_accounts import assert_accounts_match_their_people, kept_and_recomputed

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


async def test_accounts_changed_by_two_consumers_and_summed_afresh_at_once_stay_the_sum_of_their_people(
    engine: AsyncEngine, log: EmbeddedLog
) -> None:
    sessions = create_sessionmaker(engine, **{SOURCE_KEY: "/baton/scoring"})
    first, second = consumer(sessions, log), consumer(sessions, log)
    acme = [f"acme-{n:02}" for n in range(12)]
    globex = [f"globex-{n:02}" for n in range(12)]
    await first.on_batch(
        records(
            *(
                LeadReceived(lead_id=p, email=f"{p}@{p.partition('-')[0]}.example", received_at=T0)
                for p in acme + globex
            )
        )
    )

    def engaged(people: list[str], hours: float) -> list[Record]:
        return records(
            *(
                LeadActivity(lead_id=p, activity_type="webinar_attended", occurred_at=T0 + timedelta(hours=hours))
                for p in people
            )
        )

    async def sum_afresh() -> None:
        async with sessions() as session, session.begin():
            await accounts.rebuild(session, 30.0)

    for hour in range(1, 7):
        # Each consumer changes both accounts, through their leads in opposite orders, while every account is
        # summed afresh; the two batches share no lead, so nothing but the accounts' rows orders them.
        await asyncio.gather(
            first.on_batch(engaged(acme[:6] + globex[:6], hour)),
            second.on_batch(engaged(globex[6:][::-1] + acme[6:][::-1], hour + 0.5)),
            sum_afresh(),
        )

    async with sessions() as session:
        compared = await kept_and_recomputed(session)
        activities = (await session.scalars(select(LeadScore.activities))).all()
    assert_accounts_match_their_people(compared)
    assert set(compared) == {"acme.example", "globex.example"}
    assert min(compared[d][1] for d in compared) > 100  # 12 people with several webinars each
    assert sum(len(a) for a in activities) == 6 * 24  # nothing lost, nothing twice
    assert await log.read(dlq_topic(LEADS_INGESTED)) == []
