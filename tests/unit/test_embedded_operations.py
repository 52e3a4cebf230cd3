"""Running on the embedded default: prompt wake-ups, one replica per service, retention, the DLQ commands."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.bus import Record, ReplicaRefused
from baton.bus.embedded import EmbeddedLog
from baton.cli import main
from baton.consumer import EventConsumer, Incoming, handlers
from baton.db import create_engine
from baton.events import LEADS_INGESTED, CloudEvent, LeadReceived, dlq_topic
from baton.outbox import InboxEntry
from baton.runtime import ServiceRuntime
from baton.settings import Settings
from baton_lead_ingest.app import SPEC as LEAD_INGEST
from baton_lead_ingest.models import IdempotentAnswer
from tests.integration.conftest import create_messaging_schema
from tests.unit.conftest import run_until


def _event(lead_id: str) -> CloudEvent:
    return CloudEvent.wrap(
        LeadReceived(lead_id=lead_id, email=f"{lead_id}@example.com", received_at=datetime.now(UTC)), source="/t"
    )


async def test_a_publish_from_another_process_wakes_an_idle_consumer_without_waiting_for_a_poll(tmp_path: Path) -> None:
    # Polling once a minute: only the wake-up can deliver the second record within the test's few seconds.
    consumer_side = EmbeddedLog(tmp_path / "bus.db", poll_interval=60)
    publisher_side = EmbeddedLog(tmp_path / "bus.db")
    await consumer_side.start()
    await publisher_side.start()
    await publisher_side.publish([Record.from_event(_event("first"))])
    delivered: list[Record] = []
    second_arrived = asyncio.Event()

    async def handler(batch: Sequence[Record]) -> None:
        delivered.extend(batch)
        if len(delivered) == 2:
            second_arrived.set()

    async def publish_when_the_consumer_waits() -> None:
        await consumer_side.idle.wait()  # the first record is done and the log has nothing more
        await publisher_side.publish([Record.from_event(_event("second"))])

    try:
        publishing = asyncio.create_task(publish_when_the_consumer_waits())
        await run_until(consumer_side.consume("waker", [LEADS_INGESTED], handler), second_arrived)
        await publishing
    finally:
        await consumer_side.stop()
        await publisher_side.stop()
    assert [r.key for r in delivered] == ["first", "second"]


async def test_a_second_replica_of_lead_ingest_on_the_embedded_log_is_refused_with_the_way_out(tmp_path: Path) -> None:
    # lead-ingest has no consumer group of its own: the service itself must be claimed.
    settings = Settings(data_dir=tmp_path)
    first = ServiceRuntime(LEAD_INGEST, settings)
    second = ServiceRuntime(LEAD_INGEST, settings)
    await first.start()
    try:
        with pytest.raises(ReplicaRefused, match="BATON_BUS=kafka"):
            await second.start()
    finally:
        await first.stop()
    third = ServiceRuntime(LEAD_INGEST, settings)
    await third.start()  # the first one stopped: its place is free again
    await third.stop()


async def test_pruning_forgets_old_inbox_ids_idempotency_answers_and_log_records_every_group_passed_not_dead_letters(
    tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    settings = Settings(data_dir=tmp_path, inbox_retention_days=7, log_retention_days=7)
    runtime = ServiceRuntime(LEAD_INGEST, settings, clock=lambda: now + timedelta(days=8))
    await runtime.start()
    try:
        async with runtime.sessions() as session, session.begin():
            session.add(InboxEntry(consumer_group="g", event_id="old", processed_at=now - timedelta(days=1)))
            session.add(InboxEntry(consumer_group="g", event_id="recent", processed_at=now + timedelta(days=7)))
            for key, at in (("old-key", now - timedelta(days=1)), ("recent-key", now + timedelta(days=7))):
                session.add(
                    IdempotentAnswer(caller="c", key=key, request_hash="h", status=202, body="{}", created_at=at)
                )
        log = runtime.bus
        assert isinstance(log, EmbeddedLog)
        await log.publish([Record.from_event(_event(f"lead-{n}")) for n in range(4)])
        await log.publish([Record(topic=dlq_topic(LEADS_INGESTED), key="parked", value=b"{}")])
        seen: list[Record] = []
        read_two = asyncio.Event()

        async def reads_two(batch: Sequence[Record]) -> None:
            seen.extend(batch)
            if len(seen) > 2:
                read_two.set()
                await asyncio.Future()  # still busy with the second batch: its position is not saved

        other = EmbeddedLog(tmp_path / "bus.db", batch_size=2)
        await other.start()
        try:
            await run_until(other.consume("reader", [LEADS_INGESTED], reads_two), read_two)
        finally:
            await other.stop()

        rows_pruned, log_pruned = await runtime.prune()

        async with runtime.sessions() as session:
            left = set((await session.scalars(select(InboxEntry.event_id))).all())
            count = await session.scalar(select(func.count()).select_from(InboxEntry))
            keys = set((await session.scalars(select(IdempotentAnswer.key))).all())
        remaining = await log.read(LEADS_INGESTED)
        parked = await log.read(dlq_topic(LEADS_INGESTED))
    finally:
        await runtime.stop()
    assert (rows_pruned, left, count, keys) == (2, {"recent"}, 1, {"recent-key"})
    assert log_pruned == 2, "only what the one reading group has passed"
    assert [r.key for r in remaining] == ["lead-2", "lead-3"]
    assert [r.key for r in parked] == ["parked"]


async def test_baton_dlq_lists_a_parked_event_and_replay_applies_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BATON_DATA_DIR", str(tmp_path))
    log = EmbeddedLog(tmp_path / "bus.db")
    await log.start()
    applied: list[str] = []
    broken = True

    async def on_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
        if broken:
            raise LookupError("fixed in the next release")
        applied.append(event.id)

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'consumer.db'}")
    await create_messaging_schema(engine)
    consumer = EventConsumer(
        group="scoring",
        handlers=handlers(on_received),
        bus=log,
        sessions=async_sessionmaker(engine),
        retry_pause_seconds=0,
    )
    event = _event("parked")
    try:
        await consumer.on_record(Record.from_event(event))

        assert await asyncio.to_thread(main, ["dlq", "list"]) == 0
        listed = capsys.readouterr().out
        assert event.id in listed and "group=scoring" in listed and "LookupError" in listed

        broken = False
        assert await asyncio.to_thread(main, ["dlq", "replay", "--id", event.id]) == 0
        assert "replayed 1 event" in capsys.readouterr().out
        assert await asyncio.to_thread(main, ["dlq", "replay", "--id", event.id]) == 1, "nothing left to replay"

        replayed = await log.read(LEADS_INGESTED)
        await consumer.on_batch(replayed)
        await consumer.on_batch(replayed)
    finally:
        await log.stop()
        await engine.dispose()
    assert applied == [event.id]


async def test_where_no_doorbell_can_be_bound_a_consumer_polls_often_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_abstract_sockets(address: str) -> None:
        raise OSError("abstract Unix sockets are Linux-only")

    monkeypatch.setattr("baton.bus.embedded._WakeUp", no_abstract_sockets)
    log = EmbeddedLog(tmp_path / "bus.db", poll_interval=60)
    await log.start()
    delivered: list[Record] = []
    arrived = asyncio.Event()

    async def handler(batch: Sequence[Record]) -> None:
        delivered.extend(batch)
        if any(r.key == "later" for r in delivered):
            arrived.set()

    async def publish_once_the_group_waits() -> None:
        await log.idle.wait()  # the first record is done and the log has nothing more
        await log.publish([Record.from_event(_event("later"))])

    await log.publish([Record.from_event(_event("first"))])
    try:
        publishing = asyncio.create_task(publish_once_the_group_waits())
        await run_until(log.consume("poller", [LEADS_INGESTED], handler), arrived)
        await publishing
    finally:
        await log.stop()
    assert [r.key for r in delivered] == ["first", "later"]
