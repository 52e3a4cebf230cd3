"""scoring forgets an erased lead: its facts, scores and history go, and later events for it change nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.consumer import EventConsumer
from baton.events import (
    LEADS_INGESTED,
    CloudEvent,
    LeadActivity,
    LeadErased,
    LeadQualified,
    LeadUpdated,
    dlq_topic,
)
from baton.outbox import OutboxEntry
from baton_scoring.consumers import HANDLERS
from baton_scoring.models import ErasedLead, LeadScore, ScoreHistory
from tests.unit.personal_data import ADA, GRACE, lead_received, where_found
from tests.unit.test_scoring_consumers import engine as engine  # noqa: F401 (a fixture)
from tests.unit.test_scoring_consumers import records
from tests.unit.test_scoring_consumers import sessions as sessions  # noqa: F401 (a fixture)

ReadTopic = Callable[[EmbeddedLog, str], Awaitable[list[Record]]]
NOW = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
# Lead ids are opaque: they name nobody, and stay after an erasure.
GRACE_ID, ADA_ID, NOBODY_ID = (f"6d0c1a52-9f7e-4c1b-8a55-00000000000{n}" for n in range(3))


@pytest.fixture
def scoring(sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog) -> EventConsumer:
    """scoring's consumer group, its events handed to it batch by batch."""
    return EventConsumer(
        group="scoring",
        handlers=HANDLERS,
        bus=embedded_log,
        sessions=sessions,
        retry_pause_seconds=0,
        clock=lambda: NOW,
    )


def updated(lead_id: str) -> LeadUpdated:
    return LeadUpdated(lead_id=lead_id, changed={"title": GRACE.title, "email": GRACE.email}, updated_at=NOW)


def activity(lead_id: str) -> LeadActivity:
    return LeadActivity(lead_id=lead_id, activity_type="demo_request", occurred_at=NOW)


async def count(sessions: async_sessionmaker[AsyncSession], column: InstrumentedAttribute[str], lead_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).where(column == lead_id)) or 0


async def outbox_types(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> Sequence[str]:
    async with sessions() as session:
        return (
            await session.scalars(
                select(OutboxEntry.type).where(OutboxEntry.aggregate_id == lead_id).order_by(OutboxEntry.id)
            )
        ).all()


async def test_an_erased_lead_leaves_none_of_its_personal_data_in_any_table_and_others_keep_theirs(
    scoring: EventConsumer, sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    await scoring.on_batch(
        records(lead_received(GRACE, lead_id=GRACE_ID), lead_received(ADA, lead_id=ADA_ID), activity(GRACE_ID))
    )
    assert {table for table, _, _ in await where_found(engine, GRACE.values)} >= {"lead_scores", "outbox"}

    await scoring.on_batch(records(LeadErased(lead_id=GRACE_ID)))

    assert await where_found(engine, GRACE.values) == []
    assert await count(sessions, LeadScore.lead_id, GRACE_ID) == 0
    assert await count(sessions, ScoreHistory.lead_id, GRACE_ID) == 0
    assert await count(sessions, ErasedLead.lead_id, GRACE_ID) == 1
    # The other lead keeps its score, and Grace's events not yet published keep what counts: her MQL
    # still goes out, without her details.
    assert await count(sessions, LeadScore.lead_id, ADA_ID) == 1
    assert {table for table, _, _ in await where_found(engine, ADA.values)} >= {"lead_scores"}
    # The demo request earns no points: it qualifies her without changing her score.
    assert await outbox_types(sessions, GRACE_ID) == ["baton.lead.scored.v1", "baton.lead.qualified.v1"]
    async with sessions() as session:
        payload = await session.scalar(
            select(OutboxEntry.payload).where(
                OutboxEntry.aggregate_id == GRACE_ID, OutboxEntry.type == LeadQualified.event_type
            )
        )
    assert payload is not None
    qualified = LeadQualified.model_validate(CloudEvent.model_validate_json(payload).data)
    assert qualified.lead.model_dump(exclude_none=True) == {
        "country": "US",
        "company_size": 2_500,
        "industry": "Software",
        "source": "webinar",
        "campaign": "spring-launch",
    }


async def test_an_update_or_activity_after_the_erasure_recreates_nothing_and_is_not_dead_lettered(
    scoring: EventConsumer,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
) -> None:
    await scoring.on_batch(records(lead_received(GRACE, lead_id=GRACE_ID), LeadErased(lead_id=GRACE_ID)))
    published_before = await outbox_types(sessions, GRACE_ID)

    await scoring.on_batch(records(updated(GRACE_ID), activity(GRACE_ID)))
    # Sent again after the inbox forgot it (a replay from the dead-letter queue, say).
    await scoring.on_batch(records(lead_received(GRACE, lead_id=GRACE_ID)))

    assert await where_found(engine, GRACE.values) == []
    assert await count(sessions, LeadScore.lead_id, GRACE_ID) == 0
    assert await outbox_types(sessions, GRACE_ID) == published_before
    assert await read_topic(embedded_log, dlq_topic(LEADS_INGESTED)) == []


async def test_an_update_of_a_lead_never_received_nor_erased_still_goes_to_the_dead_letter_queue(
    scoring: EventConsumer, embedded_log: EmbeddedLog, read_topic: ReadTopic
) -> None:
    await scoring.on_batch(records(updated(NOBODY_ID)))

    [parked] = await read_topic(embedded_log, dlq_topic(LEADS_INGESTED))
    assert parked.key == NOBODY_ID


async def test_erasing_twice_or_erasing_a_lead_scoring_never_saw_is_harmless(
    scoring: EventConsumer,
    sessions: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
) -> None:
    await scoring.on_batch(records(lead_received(GRACE, lead_id=GRACE_ID), lead_received(ADA, lead_id=ADA_ID)))

    await scoring.on_batch(records(LeadErased(lead_id=GRACE_ID), LeadErased(lead_id=NOBODY_ID)))
    await scoring.on_batch(records(LeadErased(lead_id=GRACE_ID)))

    assert await where_found(engine, GRACE.values) == []
    assert await count(sessions, ErasedLead.lead_id, GRACE_ID) == 1
    assert await count(sessions, ErasedLead.lead_id, NOBODY_ID) == 1
    assert await count(sessions, LeadScore.lead_id, ADA_ID) == 1
    assert await read_topic(embedded_log, dlq_topic(LEADS_INGESTED)) == []
