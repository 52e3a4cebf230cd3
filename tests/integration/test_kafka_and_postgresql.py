"""The Kafka transport, the outbox and the inbox against the real Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
import sys
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baton.bus import Record
from baton.bus.kafka import KafkaBus
from baton.consumer import EventConsumer, Incoming
from baton.db import create_sessionmaker
from baton.events import LEADS_INGESTED, CloudEvent, LeadReceived, dlq_topic, from_binary
from baton.outbox import RELAY_KEY, OutboxEntry, OutboxRelay, add_event
from tests.conftest import KAFKA_BOOTSTRAP

pytestmark = pytest.mark.integration

WAIT_SECONDS = 60


def received(lead_id: str) -> CloudEvent:
    return CloudEvent.wrap(
        LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", received_at=datetime.now(UTC)), source="/test"
    )


async def collect(bus: KafkaBus, group: str, count: int) -> list[Record]:
    """Consumes leads.ingested until ``count`` records arrived, then stops."""
    return await collect_from(bus, group, LEADS_INGESTED, count)


async def collect_from(
    bus: KafkaBus,
    group: str,
    topic: str,
    count: int,
    *,
    apply: Callable[[Record], Awaitable[None]] | None = None,
    linger: float = 0.0,
) -> list[Record]:
    """Consumes a topic until ``count`` records arrived (handing each to ``apply`` first), then stops.

    ``linger`` keeps consuming that many seconds longer, so an unexpected extra delivery is seen too.
    """
    seen: list[Record] = []
    done = asyncio.Event()

    async def handler(record: Record) -> None:
        if apply is not None:
            await apply(record)
        seen.append(record)
        if len(seen) >= count:
            done.set()

    task = asyncio.create_task(bus.consume(group, [topic], handler))
    try:
        await asyncio.wait_for(done.wait(), WAIT_SECONDS)
        await asyncio.sleep(linger)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return seen


async def record_lead(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    await session.execute(text("INSERT INTO applied (lead_id) VALUES (:lead_id)"), {"lead_id": event.data.lead_id})


def lead_recorder(bus: KafkaBus, engine: AsyncEngine, group: str) -> EventConsumer:
    """A consumer group that writes each received lead's id to ``applied``, once per event."""
    return EventConsumer(
        group=group, handlers={LeadReceived.event_type: record_lead}, bus=bus, sessions=create_sessionmaker(engine)
    )


async def applied_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM applied"))).scalar_one())


async def test_kafka_delivers_each_leads_events_in_the_order_published(kafka_bus: KafkaBus) -> None:
    leads = [f"lead-{n}" for n in range(6)]
    events = [received(leads[i % len(leads)]) for i in range(60)]
    for start in range(0, len(events), 7):
        await kafka_bus.publish([Record.from_event(e) for e in events[start : start + 7]])

    records = await collect(kafka_bus, "order", len(events))

    published: dict[str, list[str]] = defaultdict(list)
    for event in events:
        published[event.subject].append(event.id)
    delivered: dict[str, list[str]] = defaultdict(list)
    for record in records:
        event = from_binary(record.headers, record.value)
        assert record.key == event.subject
        delivered[event.subject].append(event.id)
    assert delivered == published
    assert len({r.partition for r in records}) > 1, "keys should spread over partitions"


async def test_outbox_relay_publishes_committed_events_and_nothing_from_rollbacks(
    kafka_bus: KafkaBus, pg_engine: AsyncEngine
) -> None:
    relay = OutboxRelay(engine=pg_engine, bus=kafka_bus)
    sessions = create_sessionmaker(pg_engine, **{RELAY_KEY: relay})
    async with sessions() as session, session.begin():
        kept = add_event(session, received("kept").payload(), source="/test")
    async with sessions() as session:
        add_event(session, received("dropped").payload(), source="/test")
        await session.rollback()
    relay_task = asyncio.create_task(relay.run())
    try:
        records = await collect(kafka_bus, "relay", 1)
    finally:
        relay_task.cancel()
        await asyncio.gather(relay_task, return_exceptions=True)
    assert [from_binary(r.headers, r.value).id for r in records] == [kept.id]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxEntry)) == 0


async def test_redelivered_event_changes_nothing_on_postgresql(kafka_bus: KafkaBus, pg_engine: AsyncEngine) -> None:
    event = received("twice")
    await kafka_bus.publish([Record.from_event(event), Record.from_event(event), Record.from_event(received("once"))])
    consumer = lead_recorder(kafka_bus, pg_engine, "inbox")
    await collect_from(kafka_bus, "inbox", LEADS_INGESTED, 3, apply=consumer.on_record)
    async with pg_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT lead_id FROM applied ORDER BY lead_id"))).scalars().all()
    assert rows == ["once", "twice"]


async def test_consumer_killed_after_commit_but_before_offset_commit_applies_the_event_once(
    kafka_bus: KafkaBus, pg_engine: AsyncEngine, unique_name: str
) -> None:
    await kafka_bus.publish([Record.from_event(received("crash"))])
    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.crashing_consumer",
        pg_engine.url.render_as_string(hide_password=False),
        KAFKA_BOOTSTRAP,
        f"{unique_name}.",
        "crashy",
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(crashing.communicate(), WAIT_SECONDS)
    assert crashing.returncode == 137, stderr.decode()[-2000:]
    assert await applied_count(pg_engine) == 1

    consumer = lead_recorder(kafka_bus, pg_engine, "crashy")
    redelivered = await collect_from(kafka_bus, "crashy", LEADS_INGESTED, 1, apply=consumer.on_record, linger=1)
    assert len(redelivered) == 1, "the uncommitted event should come back after the crash"
    assert await applied_count(pg_engine) == 1


async def test_poison_event_goes_to_the_dlq_and_the_consumer_keeps_going(
    kafka_bus: KafkaBus, pg_engine: AsyncEngine
) -> None:
    good = received("after-poison")
    poison = Record(topic=LEADS_INGESTED, key="poison", value=b"{not json", headers=(("ce_type", b"x"),))
    await kafka_bus.publish([poison, Record.from_event(good)])
    consumer = lead_recorder(kafka_bus, pg_engine, "poisoned")
    task = asyncio.create_task(consumer.run())
    try:
        dead = await collect_from(kafka_bus, "dlq-reader", dlq_topic(LEADS_INGESTED), 1)
        async with asyncio.timeout(WAIT_SECONDS):
            while await applied_count(pg_engine) < 1:  # noqa: ASYNC110 - the state lives in PostgreSQL
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert dead[0].value == poison.value
    assert dead[0].header("baton_consumer_group") == "poisoned"
    assert dead[0].header("baton_attempts") == "1"
    assert "missing CloudEvents header ce_id" in (dead[0].header("baton_error") or "")
    async with pg_engine.connect() as conn:
        assert (await conn.execute(text("SELECT lead_id FROM applied"))).scalars().all() == ["after-poison"]
