"""The transactional outbox and the consumer's inbox, retries and dead-letter queue, on SQLite and the embedded log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.consumer import EventConsumer, Incoming
from baton.db import Base, create_engine, create_sessionmaker
from baton.events import LEADS_INGESTED, CloudEvent, LeadErased, LeadReceived, LeadScored, dlq_topic
from baton.outbox import RELAY_KEY, InboxEntry, OutboxEntry, OutboxRelay, add_event, decode_record

NewLead = Callable[..., LeadReceived]
ConsumeRecords = Callable[[EmbeddedLog, str, Sequence[str], int], Awaitable[list[Record]]]
ReadTopic = Callable[[EmbeddedLog, str], Awaitable[list[Record]]]
SOURCE = "/test"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A SQLite database in tmp_path holding only the outbox and inbox tables."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=[OutboxEntry.__table__, InboxEntry.__table__])
    yield engine
    await engine.dispose()


@pytest.fixture
def relay(engine: AsyncEngine, embedded_log: EmbeddedLog) -> OutboxRelay:
    # Idle checks so rare that only a wake-up from a commit can explain a prompt publish.
    return OutboxRelay(engine=engine, bus=embedded_log, idle_check_seconds=60)


@pytest.fixture
def sessions(engine: AsyncEngine, relay: OutboxRelay) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine, **{RELAY_KEY: relay})


async def _outbox_size(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(OutboxEntry)) or 0


def _record(lead: LeadReceived) -> Record:
    return Record.from_event(CloudEvent.wrap(lead, source=SOURCE))


async def test_committed_event_is_published_by_the_relay_and_leaves_the_outbox(
    sessions: async_sessionmaker[AsyncSession],
    relay: OutboxRelay,
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    async with sessions() as session, session.begin():
        envelope = add_event(session, new_lead(), source=SOURCE)

    published = await relay.publish_pending()

    assert published == 1
    [record] = await read_topic(embedded_log, LEADS_INGESTED)
    assert decode_record(record) == envelope
    assert record.key == envelope.subject
    assert await _outbox_size(sessions) == 0
    assert await relay.publish_pending() == 0


async def test_relay_publishes_pending_events_in_the_order_they_were_committed(
    sessions: async_sessionmaker[AsyncSession],
    relay: OutboxRelay,
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    envelopes = []
    for n in range(3):
        async with sessions() as session, session.begin():
            envelopes.append(add_event(session, new_lead(email=f"lead{n}@example.com"), source=SOURCE))

    await relay.publish_pending()

    assert [decode_record(r).id for r in await read_topic(embedded_log, LEADS_INGESTED)] == [e.id for e in envelopes]


async def test_rolled_back_transaction_publishes_nothing(
    sessions: async_sessionmaker[AsyncSession],
    relay: OutboxRelay,
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    class StateChangeFailed(Exception):
        pass

    with pytest.raises(StateChangeFailed):
        async with sessions() as session, session.begin():
            add_event(session, new_lead(), source=SOURCE)
            raise StateChangeFailed

    assert await relay.publish_pending() == 0
    assert await _outbox_size(sessions) == 0
    assert await read_topic(embedded_log, LEADS_INGESTED) == []


async def test_commit_wakes_the_idle_relay_which_publishes_at_once(
    sessions: async_sessionmaker[AsyncSession],
    relay: OutboxRelay,
    embedded_log: EmbeddedLog,
    consume_records: ConsumeRecords,
    new_lead: NewLead,
) -> None:
    running = asyncio.create_task(relay.run())
    try:
        await relay.idle.wait()  # it has looked once and now waits idle_check_seconds unless woken
        async with sessions() as session, session.begin():
            envelope = add_event(session, new_lead(), source=SOURCE)

        async with asyncio.timeout(1.0):
            [record] = await consume_records(embedded_log, "reader", [LEADS_INGESTED], 1)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    assert decode_record(record).id == envelope.id


class Handler:
    """An event handler that records each call and, like a real one, emits an event through the outbox."""

    def __init__(self, *, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures

    async def __call__(self, event: Incoming[Any], session: AsyncSession) -> None:
        self.calls += 1
        add_event(session, LeadErased(lead_id=event.data.lead_id), source="/baton/consumer-under-test")
        if self.calls <= self.failures:
            raise RuntimeError(f"handler failure {self.calls}")


def _consumer(
    handler: Handler,
    embedded_log: EmbeddedLog,
    sessions: async_sessionmaker[AsyncSession],
    *,
    event_type: str = LeadReceived.event_type,
) -> EventConsumer:
    return EventConsumer(
        group="scoring",
        handlers={event_type: handler},
        bus=embedded_log,
        sessions=sessions,
        max_attempts=3,
        retry_pause_seconds=0,
    )


async def test_redelivered_event_changes_nothing(
    sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog, new_lead: NewLead
) -> None:
    handler = Handler()
    consumer = _consumer(handler, embedded_log, sessions)
    record = _record(new_lead())

    await consumer.on_record(record)
    await consumer.on_record(record)

    assert handler.calls == 1
    assert await _outbox_size(sessions) == 1


async def test_same_event_is_applied_again_by_another_consumer_group(
    sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog, new_lead: NewLead
) -> None:
    scoring, metrics = Handler(), Handler()
    record = _record(new_lead())

    await _consumer(scoring, embedded_log, sessions).on_record(record)
    await EventConsumer(
        group="metrics", handlers={LeadReceived.event_type: metrics}, bus=embedded_log, sessions=sessions
    ).on_record(record)

    assert (scoring.calls, metrics.calls) == (1, 1)


async def test_failed_attempt_leaves_no_trace_and_the_retry_applies_the_event_once(
    sessions: async_sessionmaker[AsyncSession],
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    handler = Handler(failures=1)
    consumer = _consumer(handler, embedded_log, sessions)
    record = _record(new_lead())

    await consumer.on_record(record)
    await consumer.on_record(record)

    assert handler.calls == 2
    assert await _outbox_size(sessions) == 1, "the failed attempt's outbox row must have been rolled back"
    assert await read_topic(embedded_log, dlq_topic(LEADS_INGESTED)) == []


async def test_event_whose_handler_keeps_failing_is_retried_then_parked_on_the_dlq(
    sessions: async_sessionmaker[AsyncSession],
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    handler = Handler(failures=1_000)
    record = _record(new_lead())

    await _consumer(handler, embedded_log, sessions).on_record(record)

    assert handler.calls == 3
    assert await _outbox_size(sessions) == 0
    [parked] = await read_topic(embedded_log, "leads.ingested.dlq")
    assert parked.value == record.value
    assert parked.key == record.key
    assert parked.header("baton_attempts") == "3"
    assert parked.header("baton_consumer_group") == "scoring"
    assert "handler failure 3" in (parked.header("baton_error") or "")
    assert parked.header("baton_original_topic") == LEADS_INGESTED
    assert decode_record(parked) == decode_record(record)


async def test_record_that_is_not_json_goes_straight_to_the_dlq(
    sessions: async_sessionmaker[AsyncSession],
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    handler = Handler()
    valid = _record(new_lead())
    garbled = Record(topic=valid.topic, key=valid.key, value=b"\x00not json{", headers=valid.headers)

    await _consumer(handler, embedded_log, sessions).on_record(garbled)

    assert handler.calls == 0
    [parked] = await read_topic(embedded_log, dlq_topic(LEADS_INGESTED))
    assert parked.value == garbled.value
    assert parked.header("baton_attempts") == "1"
    assert parked.header("baton_consumer_group") == "scoring"
    assert parked.header("baton_error")


async def test_event_type_without_a_handler_is_skipped(
    sessions: async_sessionmaker[AsyncSession],
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    handler = Handler()
    consumer = _consumer(handler, embedded_log, sessions, event_type=LeadScored.event_type)

    await consumer.on_record(_record(new_lead()))

    assert handler.calls == 0
    assert await read_topic(embedded_log, dlq_topic(LEADS_INGESTED)) == []


async def test_a_record_of_a_type_the_group_does_not_handle_is_not_decoded_or_dead_lettered_even_if_garbled(
    sessions: async_sessionmaker[AsyncSession],
    embedded_log: EmbeddedLog,
    read_topic: ReadTopic,
    new_lead: NewLead,
) -> None:
    handler = Handler()
    consumer = _consumer(handler, embedded_log, sessions, event_type=LeadScored.event_type)
    received = _record(new_lead())
    garbled = Record(topic=received.topic, key=received.key, value=b"\x00not json{", headers=received.headers)
    scored = LeadScored(lead_id=received.key, score=10, fit_grade="C", engagement=0, breakdown=[], model_version=1)

    await consumer.on_batch([garbled, Record.from_event(CloudEvent.wrap(scored, source=SOURCE))])

    assert garbled.header("ce_type") == LeadReceived.event_type
    assert handler.calls == 1
    assert await read_topic(embedded_log, dlq_topic(LEADS_INGESTED)) == []


def test_consumer_refuses_handlers_for_unknown_event_types(
    sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog
) -> None:
    with pytest.raises(ValueError, match="baton.lead.teleported.v1"):
        _consumer(Handler(), embedded_log, sessions, event_type="baton.lead.teleported.v1")


async def test_running_consumer_applies_events_from_the_topics_its_handlers_need(
    sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog, new_lead: NewLead
) -> None:
    handler = Handler()
    await embedded_log.publish([_record(new_lead())])

    running = asyncio.create_task(_consumer(handler, embedded_log, sessions).run())
    try:
        async with asyncio.timeout(5):  # applied, committed, and nothing more to read
            await embedded_log.idle.wait()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    assert handler.calls == 1
    assert await _outbox_size(sessions) == 1


async def test_a_relay_woken_at_the_moment_it_is_stopped_stops(relay: OutboxRelay) -> None:
    running = asyncio.create_task(relay.run())
    async with asyncio.timeout(5):
        await relay.idle.wait()

    # A commit wakes the relay in the same turn of the event loop as the service stops it.
    relay.wake()
    asyncio.get_running_loop().call_soon(running.cancel)

    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):
            await running
