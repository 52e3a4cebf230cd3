"""One contract for the bus, the outbox and the inbox, run against every backend.

Each test runs twice: on the embedded log with SQLite (the embedded default) and on the real Kafka
with the real PostgreSQL (production). What a service may rely on is exactly what passes on both.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from baton.bus import BatchHandler, Bus, Record
from baton.bus.embedded import EmbeddedLog
from baton.bus.kafka import KafkaBus
from baton.consumer import EventConsumer, Incoming, handlers
from baton.db import create_engine, create_sessionmaker, is_postgresql
from baton.dlq import dead_letters, replay
from baton.events import LEADS_INGESTED, CloudEvent, LeadReceived, dlq_topic
from baton.outbox import RELAY_KEY, OutboxEntry, OutboxRelay, add_event, decode_record
from tests.conftest import KAFKA_BOOTSTRAP, LogSignal
from tests.integration.conftest import create_messaging_schema

pytestmark = pytest.mark.integration

WAIT_SECONDS = 60.0


@dataclass
class Backend:
    """A bus and a consumer's database of one kind, plus what a second process needs to reach them."""

    name: str
    bus: Bus
    engine: AsyncEngine
    bus_kind: str
    bus_location: str
    prefix: str
    extra_buses: list[Bus] = field(default_factory=list)

    async def another_bus(self) -> Bus:
        """A second client of the same bus, as another process would have."""
        bus: Bus = (
            KafkaBus(bootstrap_servers=self.bus_location, prefix=self.prefix, replication_factor=1)
            if self.bus_kind == "kafka"
            else EmbeddedLog(Path(self.bus_location))
        )
        await bus.start()
        self.extra_buses.append(bus)
        return bus


@pytest.fixture(params=["embedded+sqlite", "kafka+postgresql"])
async def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique_name: str,
    fresh_database: Callable[[str], Awaitable[str]],
) -> AsyncIterator[Backend]:
    """The embedded log with SQLite, or Kafka with PostgreSQL, each with the messaging tables and ``applied``."""
    if request.param == "embedded+sqlite":
        location = str(tmp_path / "bus.db")
        bus: Bus = EmbeddedLog(Path(location))
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}")
        kind, prefix = "embedded", ""
    else:
        location, prefix, kind = KAFKA_BOOTSTRAP, f"{unique_name}.", "kafka"
        bus = KafkaBus(bootstrap_servers=location, prefix=prefix, replication_factor=1)
        engine = create_engine(await fresh_database("contract"))
    await create_messaging_schema(engine)
    await bus.start()
    chosen = Backend(request.param, bus, engine, kind, location, prefix)
    try:
        yield chosen
    finally:
        for extra in chosen.extra_buses:
            await extra.stop()
        await bus.stop()
        await engine.dispose()


def received(lead_id: str) -> CloudEvent:
    return CloudEvent.wrap(
        LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", received_at=datetime.now(UTC)), source="/test"
    )


async def record_lead(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    await session.execute(
        text("INSERT INTO applied (lead_id) VALUES (:lead_id)"), {"lead_id": f"{event.data.lead_id}/{event.id}"}
    )


def recorder(backend: Backend, group: str, *, bus: Bus | None = None, **options: Any) -> EventConsumer:
    """A consumer group that writes ``<lead>/<event id>`` to ``applied`` for every lead.received it applies."""
    return EventConsumer(
        group=group,
        handlers=handlers(record_lead),
        bus=bus or backend.bus,
        sessions=create_sessionmaker(backend.engine),
        retry_pause_seconds=0.01,
        **options,
    )


async def applied_rows(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT lead_id FROM applied"))).scalars().all())


class Progress:
    """Signals once a condition on what consumers committed holds, checked after every batch they finish."""

    def __init__(self, condition: Callable[[], Awaitable[bool]]) -> None:
        self.condition = condition
        self.reached = asyncio.Event()

    def tracking(self, apply: BatchHandler) -> BatchHandler:
        async def handle(batch: Sequence[Record]) -> None:
            await apply(batch)
            if await self.condition():
                self.reached.set()

        return handle

    def run(self, consumer: EventConsumer) -> asyncio.Task[None]:
        """Runs the consumer on its bus, checking the condition after each batch it applies."""
        return asyncio.create_task(
            consumer.bus.consume(consumer.group, consumer.topics, self.tracking(consumer.on_batch))
        )

    async def wait(self) -> None:
        async with asyncio.timeout(WAIT_SECONDS):
            await self.reached.wait()


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def keys(events: Sequence[CloudEvent]) -> list[str]:
    return [f"{e.subject}/{e.id}" for e in events]


async def test_each_published_event_is_applied_once_and_each_leads_events_in_order(backend: Backend) -> None:
    events = [received(f"lead-{n % 7}") for n in range(120)]
    for start in range(0, len(events), 11):
        await backend.bus.publish([Record.from_event(e) for e in events[start : start + 11]])
    progress = Progress(lambda: _count_is(backend.engine, len(events)))
    task = progress.run(recorder(backend, "order"))
    try:
        await progress.wait()
    finally:
        await stop(task)

    rows = await applied_rows(backend.engine)
    assert Counter(rows) == Counter(keys(events)), "each event exactly once"
    per_lead: dict[str, list[str]] = defaultdict(list)
    async with backend.engine.connect() as conn:
        ordered = (await conn.execute(text("SELECT lead_id FROM applied ORDER BY seq"))).scalars().all()
    for row in ordered:
        per_lead[row.split("/")[0]].append(row)
    published: dict[str, list[str]] = defaultdict(list)
    for key in keys(events):
        published[key.split("/")[0]].append(key)
    assert per_lead == published


async def _count_is(engine: AsyncEngine, expected: int) -> bool:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM applied"))).scalar_one()) >= expected


async def test_a_redelivered_event_changes_nothing(backend: Backend) -> None:
    twice, once = received("twice"), received("once")
    await backend.bus.publish([Record.from_event(twice), Record.from_event(once)])
    await backend.bus.publish([Record.from_event(twice)])
    consumer = recorder(backend, "inbox")
    await consumer.on_batch([Record.from_event(e) for e in (twice, once, twice)])
    marker = received("marker")
    progress = Progress(lambda: _contains(backend.engine, keys([marker])[0]))
    task = progress.run(consumer)
    await backend.bus.publish([Record.from_event(marker)])
    try:
        await progress.wait()
    finally:
        await stop(task)
    assert sorted(await applied_rows(backend.engine)) == sorted(keys([marker, once, twice]))


async def _contains(engine: AsyncEngine, key: str) -> bool:
    return key in await applied_rows(engine)


async def test_two_consumers_of_one_group_racing_for_one_batch_apply_it_once(backend: Backend) -> None:
    batch = [Record.from_event(received(f"race-{n}")) for n in range(5)]
    gate = asyncio.Event()
    first_inside = asyncio.Event()

    async def slow_recorder(event: Incoming[LeadReceived], session: AsyncSession) -> None:
        first_inside.set()
        await gate.wait()  # holds its transaction (and its inbox rows) open until the rival is waiting
        await record_lead(event, session)

    def consumer(
        handler: Callable[[Incoming[LeadReceived], AsyncSession], Awaitable[None]], engine: AsyncEngine
    ) -> EventConsumer:
        return EventConsumer(
            group="racers",
            handlers=handlers(handler),
            bus=backend.bus,
            sessions=create_sessionmaker(engine),
            retry_pause_seconds=0.01,
        )

    postgresql = is_postgresql(backend.engine)
    # On PostgreSQL the rival gives up waiting for a row lock after 100 ms and says so (a transient
    # failure, retried): proof that its inbox insert met the first one's uncommitted rows.
    rival_engine = (
        create_engine(
            backend.engine.url.render_as_string(hide_password=False),
            connect_args={"server_settings": {"lock_timeout": "100"}},
        )
        if postgresql
        else backend.engine
    )
    try:
        with LogSignal("baton.consumer", "transient failure") as rival_waited:
            first = asyncio.create_task(consumer(slow_recorder, backend.engine).on_batch(batch))
            await first_inside.wait()
            second = asyncio.create_task(consumer(record_lead, rival_engine).on_batch(batch))
            if postgresql:
                async with asyncio.timeout(WAIT_SECONDS):
                    await rival_waited.seen.wait()
            gate.set()
            async with asyncio.timeout(WAIT_SECONDS):
                await asyncio.gather(first, second)
    finally:
        if rival_engine is not backend.engine:
            await rival_engine.dispose()

    assert sorted(await applied_rows(backend.engine)) == sorted(keys([decode_record(r) for r in batch])), (
        "each event once, whoever won"
    )


async def test_a_poison_event_in_the_middle_of_a_batch_goes_to_the_dlq_and_the_rest_are_applied(
    backend: Backend,
) -> None:
    good = [received("before"), received("poisoned"), received("after")]
    undecodable = Record(topic=LEADS_INGESTED, key="junk", value=b"{not json", headers=(("ce_type", b"x"),))

    async def fails_for_one_lead(event: Incoming[LeadReceived], session: AsyncSession) -> None:
        await record_lead(event, session)
        if event.data.lead_id == "poisoned":
            raise ValueError("this lead breaks the handler every time")

    consumer = EventConsumer(
        group="poisoned",
        handlers=handlers(fails_for_one_lead),
        bus=backend.bus,
        sessions=create_sessionmaker(backend.engine),
        retry_pause_seconds=0.01,
    )
    await consumer.on_batch(
        [Record.from_event(good[0]), undecodable, Record.from_event(good[1]), Record.from_event(good[2])]
    )

    assert sorted(await applied_rows(backend.engine)) == sorted(keys([good[0], good[2]]))
    dead = {d.value: d for d in await backend.bus.read(dlq_topic(LEADS_INGESTED))}
    poisoned = Record.from_event(good[1]).value
    assert set(dead) == {undecodable.value, poisoned}
    assert (dead[undecodable.value].header("baton_attempts"), dead[poisoned].header("baton_attempts")) == ("1", "3")
    assert {d.header("baton_consumer_group") for d in dead.values()} == {"poisoned"}
    assert "ValueError" in (dead[poisoned].header("baton_error") or "")


async def test_a_transient_outage_mid_batch_is_retried_until_it_passes_and_nothing_is_dead_lettered(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    events = [received(f"outage-{n}") for n in range(6)]
    outages_left = 2

    async def loses_its_connection(event: Incoming[LeadReceived], session: AsyncSession) -> None:
        nonlocal outages_left
        await record_lead(event, session)
        if event.data.lead_id == "outage-3" and outages_left:
            outages_left -= 1
            await _lose_connection(session)

    consumer = EventConsumer(
        group="outage",
        handlers=handlers(loses_its_connection),
        bus=backend.bus,
        sessions=create_sessionmaker(backend.engine),
        max_attempts=1,
        retry_pause_seconds=0.01,
    )
    with caplog.at_level(logging.WARNING, logger="baton.consumer"):
        await consumer.on_batch([Record.from_event(e) for e in events])

    assert outages_left == 0
    assert sum("transient failure" in r.getMessage() for r in caplog.records) == 2
    assert sorted(await applied_rows(backend.engine)) == sorted(keys(events))
    assert await backend.bus.read(dlq_topic(LEADS_INGESTED)) == []


async def _lose_connection(session: AsyncSession) -> None:
    """Makes the database drop this session's connection or refuse it, as an outage would."""
    if is_postgresql(session.get_bind()):  # type: ignore[arg-type]
        await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
    else:
        # SQLite's transient failure: another writer holds the file past the busy timeout.
        raise _sqlite_locked()


def _sqlite_locked() -> Exception:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    return OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))


async def test_a_consumer_killed_between_its_commit_and_its_offset_commit_applies_the_event_once(
    backend: Backend,
) -> None:
    crash = received("crash")
    await backend.bus.publish([Record.from_event(crash)])
    crashing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.crashing_consumer",
        backend.engine.url.render_as_string(hide_password=False),
        backend.bus_kind,
        backend.bus_location,
        backend.prefix,
        "crashy",
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT_SECONDS):
        _, stderr = await crashing.communicate()
    assert crashing.returncode == 137, stderr.decode()[-2000:]
    assert await applied_rows(backend.engine) == keys([crash])

    redelivered: list[Record] = []
    consumer = recorder(backend, "crashy")

    async def watch(batch: Sequence[Record]) -> None:
        redelivered.extend(batch)
        await consumer.on_batch(batch)

    after = received("crash")  # the same lead, so the same partition: it queues behind the redelivery
    await backend.bus.publish([Record.from_event(after)])
    progress = Progress(lambda: _contains(backend.engine, keys([after])[0]))
    task = asyncio.create_task(backend.bus.consume("crashy", consumer.topics, progress.tracking(watch)))
    try:
        await progress.wait()
    finally:
        await stop(task)
    assert [decode_record(r).id for r in redelivered][:1] == [crash.id], "the uncommitted event came back"
    assert sorted(await applied_rows(backend.engine)) == sorted(keys([crash, after]))


async def test_when_a_group_changes_hands_mid_batch_nothing_is_lost_or_applied_twice(backend: Backend) -> None:
    events = [received(f"handover-{n % 9}") for n in range(90)]
    await backend.bus.publish([Record.from_event(e) for e in events[:45]])
    holding = asyncio.Event()
    release = asyncio.Event()

    async def slow(event: Incoming[LeadReceived], session: AsyncSession) -> None:
        holding.set()
        await release.wait()
        await record_lead(event, session)

    first = EventConsumer(
        group="handover", handlers=handlers(slow), bus=backend.bus, sessions=create_sessionmaker(backend.engine)
    )
    tail = received("handover-tail")
    everything = Progress(lambda: _count_is(backend.engine, len(events)))
    the_tail = Progress(lambda: _contains(backend.engine, keys([tail])[0]))

    def run(consumer: EventConsumer) -> asyncio.Task[None]:
        handler = everything.tracking(the_tail.tracking(consumer.on_batch))
        return asyncio.create_task(consumer.bus.consume(consumer.group, consumer.topics, handler))

    first_task = run(first)
    await holding.wait()
    second_bus = await backend.another_bus()
    if backend.bus_kind == "kafka":
        # A second replica joins the group: Kafka rebalances while the first is mid-batch.
        second_task = run(recorder(backend, "handover", bus=second_bus))
        release.set()
    else:
        # One owner at a time on the embedded log: the first dies mid-batch and another takes over.
        await stop(first_task)
        second_task = run(recorder(backend, "handover", bus=second_bus))
    await backend.bus.publish([Record.from_event(e) for e in events[45:]])
    try:
        await everything.wait()
        await backend.bus.publish([Record.from_event(tail)])
        await the_tail.wait()
    finally:
        release.set()
        await stop(first_task, second_task)
    assert Counter(await applied_rows(backend.engine)) == Counter(keys([*events, tail]))


async def test_a_replayed_dead_letter_is_applied_exactly_once_by_the_group_that_parked_it(backend: Backend) -> None:
    event = received("fixed-later")
    broken = True

    async def broken_until_fixed(incoming: Incoming[LeadReceived], session: AsyncSession) -> None:
        if broken:
            raise LookupError("a bug, fixed in the next release")
        await record_lead(incoming, session)

    parked_by = EventConsumer(
        group="fixme",
        handlers=handlers(broken_until_fixed),
        bus=backend.bus,
        sessions=create_sessionmaker(backend.engine),
        retry_pause_seconds=0.01,
    )
    bystander = recorder(backend, "bystander")
    await backend.bus.publish([Record.from_event(event)])
    await parked_by.on_batch([Record.from_event(event)])
    await bystander.on_batch([Record.from_event(event)])
    [letter] = await dead_letters(backend.bus)
    assert (letter.consumer_group, letter.event_id, letter.attempts) == ("fixme", event.id, 3)

    broken = False
    assert await replay(backend.bus, [letter]) == 1
    assert await dead_letters(backend.bus) == []
    replayed = [r for r in await backend.bus.read(LEADS_INGESTED) if decode_record(r).id == event.id]
    assert len(replayed) == 2  # the original and the replay
    for consumer in (parked_by, bystander):
        await consumer.on_batch(replayed)
        await consumer.on_batch(replayed)  # delivered again: still once
    assert Counter(await applied_rows(backend.engine)) == Counter(keys([event]) * 2), "once per group"


async def test_the_outbox_relay_publishes_committed_events_in_order_and_nothing_from_rollbacks(
    backend: Backend,
) -> None:
    relay = OutboxRelay(engine=backend.engine, bus=backend.bus)
    sessions = create_sessionmaker(backend.engine, **{RELAY_KEY: relay})
    kept: list[str] = []
    for n in range(3):
        async with sessions() as session, session.begin():
            kept.append(add_event(session, received("kept").payload(), source="/test").id)
        async with sessions() as session:
            add_event(session, received(f"dropped-{n}").payload(), source="/test")
            await session.rollback()
    relay_task = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(WAIT_SECONDS):  # it published all it found
            await relay.idle.wait()
    finally:
        await stop(relay_task)
    assert await _outbox_is_empty(backend.engine)
    published = [decode_record(r).id for r in await backend.bus.read(LEADS_INGESTED)]
    assert published == kept, "one lead's events, in the order committed, and none rolled back"


async def _outbox_is_empty(engine: AsyncEngine) -> bool:
    async with create_sessionmaker(engine)() as session:
        return await session.scalar(select(func.count()).select_from(OutboxEntry)) == 0
