"""metrics counts every event once, on its UTC day, with one upsert per transaction however many events it applies."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from baton.auth import issue_token
from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.consumer import EventConsumer, Incoming
from baton.db import create_engine, create_sessionmaker, migrate
from baton.events import (
    CloudEvent,
    EventData,
    LeadAssigned,
    LeadQualified,
    LeadReceived,
    LeadStatusChanged,
    RoutingAttributes,
    new_id,
)
from baton.outbox import InboxEntry
from baton_metrics.app import create_app
from baton_metrics.consumers import HANDLERS
from baton_metrics.models import KpiCounter
from baton_metrics.settings import MetricsSettings

GROUP = "metrics"
NOW = datetime(2024, 5, 3, 9, 0, tzinfo=UTC)
NEW_YORK_WINTER = timezone(timedelta(hours=-5))
KARACHI = timezone(timedelta(hours=5))
MAY_1 = date(2024, 5, 1)
MAY_2 = date(2024, 5, 2)


class PoisonEvent(Exception):
    """A handler failure that no retry cures."""


def _received(source: str = "webinar", *, at: datetime = datetime(2024, 5, 1, 12, tzinfo=UTC)) -> LeadReceived:
    return LeadReceived(lead_id=new_id(), email="a@example.com", source=source, campaign="spring", received_at=at)


def _qualified(source: str = "webinar") -> LeadQualified:
    return LeadQualified(
        lead_id=new_id(), score=50, fit_grade="A", reason="threshold", lead=RoutingAttributes(source=source)
    )


def _assigned() -> LeadAssigned:
    return LeadAssigned(
        lead_id=new_id(),
        assignment_id=new_id(),
        rep_id="rep-1",
        team="emea",
        source="webinar",
        campaign="spring",
        rule="default",
        attempt=1,
        accept_due_at=NOW + timedelta(hours=1),
        touch_due_at=NOW + timedelta(days=1),
    )


def _status(status: str, *, at: datetime, amount: Decimal | None = None) -> LeadStatusChanged:
    return LeadStatusChanged(
        lead_id=new_id(),
        assignment_id=new_id(),
        rep_id="rep-1",
        team="emea",
        source="webinar",
        campaign="spring",
        status=status,
        amount=amount,
        occurred_at=at,
    )


def _incoming(data: EventData, *, time: datetime = datetime(2024, 5, 1, 12, tzinfo=UTC)) -> Incoming[Any]:
    return Incoming(id=new_id(), source="/test", time=time, data=data, now=NOW)


async def _apply(session: AsyncSession, events: Sequence[Incoming[Any]], *, poison: str | None = None) -> None:
    """What a consumer does with a batch in its transaction: an inbox row and the handler, event after event."""
    for incoming in events:
        session.add(InboxEntry(consumer_group=GROUP, event_id=incoming.id, processed_at=NOW))
        await session.flush()
        await HANDLERS[type(incoming.data).event_type](incoming, session)
        if incoming.id == poison:
            raise PoisonEvent(incoming.id)


async def _counters(sessions: async_sessionmaker[AsyncSession]) -> dict[tuple[date, str, str], tuple[int, Decimal]]:
    async with sessions() as session:
        rows = (await session.scalars(select(KpiCounter))).all()
    return {(row.day, row.source, row.kpi): (row.count, Decimal(row.amount)) for row in rows}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}")
    await migrate(engine, "baton_metrics:migrations")
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


async def test_events_near_midnight_at_any_offset_count_on_their_utc_day(tmp_path: Path) -> None:
    settings = MetricsSettings(data_dir=tmp_path)
    app = create_app(settings)
    reader = {"Authorization": f"Bearer {issue_token(settings.signing_secret(), scopes=['metrics:read'])}"}
    events = [
        _incoming(_received(at=datetime(2024, 5, 1, 23, 30, tzinfo=NEW_YORK_WINTER))),  # 04:30Z on May 2
        _incoming(_qualified(), time=datetime(2024, 5, 2, 1, 0, tzinfo=KARACHI)),  # 20:00Z on May 1
        _incoming(_assigned(), time=datetime(2024, 5, 1, 23, 30, tzinfo=NEW_YORK_WINTER)),  # 04:30Z on May 2
        _incoming(_status("accepted", at=datetime(2024, 5, 2, 0, 30, tzinfo=KARACHI))),  # 19:30Z on May 1
    ]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://metrics") as client,
    ):
        async with app.state.runtime.sessions() as session, session.begin():
            await _apply(session, events)

        async def totals_on(day: date) -> dict[str, Any]:
            response = await client.get("/v1/kpis", params={"from": str(day), "to": str(day)}, headers=reader)
            assert response.status_code == 200, response.text
            totals: dict[str, Any] = response.json()["totals"]
            return totals

        may_1, may_2 = await totals_on(MAY_1), await totals_on(MAY_2)

    assert {k: may_1[k] for k in ("received", "mql", "assigned", "accepted")} == {
        "received": 0,
        "mql": 1,
        "assigned": 0,
        "accepted": 1,
    }
    assert {k: may_2[k] for k in ("received", "mql", "assigned", "accepted")} == {
        "received": 1,
        "mql": 0,
        "assigned": 1,
        "accepted": 0,
    }


async def test_a_batch_of_events_in_one_transaction_is_counted_with_one_upsert(
    engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    events = [
        *(_incoming(_received(source=f"source-{n % 3}")) for n in range(200)),
        *(
            _incoming(_status("won", at=datetime(2024, 5, 2, 8, tzinfo=UTC), amount=Decimal("10.25")))
            for _ in range(100)
        ),
    ]
    counter_writes: list[str] = []

    def note_counter_write(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "kpi_counters" in statement:
            counter_writes.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", note_counter_write)
    try:
        async with sessions() as session, session.begin():
            await _apply(session, events)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note_counter_write)

    assert len(counter_writes) == 1
    assert await _counters(sessions) == {
        (MAY_1, "source-0", "received"): (67, Decimal("0")),
        (MAY_1, "source-1", "received"): (67, Decimal("0")),
        (MAY_1, "source-2", "received"): (66, Decimal("0")),
        (MAY_2, "webinar", "won"): (100, Decimal("1025.00")),
    }


async def test_counts_add_to_the_totals_earlier_transactions_wrote(sessions: async_sessionmaker[AsyncSession]) -> None:
    for _ in range(3):
        async with sessions() as session, session.begin():
            await _apply(session, [_incoming(_status("won", at=datetime(2024, 5, 1, tzinfo=UTC), amount=Decimal(5)))])

    assert await _counters(sessions) == {(MAY_1, "webinar", "won"): (3, Decimal("15.00"))}


async def test_batch_rolled_back_and_applied_again_one_event_at_a_time_counts_each_event_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    events = [_incoming(_received(source=f"source-{n}")) for n in range(5)]
    poison = events[3].id

    async with sessions() as session:
        with pytest.raises(PoisonEvent):
            async with session.begin():
                await _apply(session, events, poison=poison)
        # The same session applies them again, each in its own transaction, as a consumer falls back to.
        for incoming in events:
            with pytest.raises(PoisonEvent) if incoming.id == poison else contextlib.nullcontext():
                async with session.begin():
                    await _apply(session, [incoming], poison=poison)

    assert await _counters(sessions) == {(MAY_1, f"source-{n}", "received"): (1, Decimal("0")) for n in (0, 1, 2, 4)}


async def test_transaction_rolled_back_before_commit_counts_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        async with session.begin():
            await _apply(session, [_incoming(_received())])
            await session.rollback()
        async with session.begin():
            await _apply(session, [_incoming(_received(source="ads"))])

    assert await _counters(sessions) == {(MAY_1, "ads", "received"): (1, Decimal("0"))}


async def test_counts_made_in_a_rolled_back_savepoint_are_dropped_and_the_others_kept(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await _apply(session, [_incoming(_received(source="before"))])
        with pytest.raises(PoisonEvent):
            async with session.begin_nested():
                poisoned = _incoming(_received(source="poisoned"))
                await _apply(session, [poisoned], poison=poisoned.id)
        async with session.begin_nested():
            await _apply(session, [_incoming(_received(source="released"))])
        await _apply(session, [_incoming(_received(source="after"))])

    assert await _counters(sessions) == {
        (MAY_1, source, "received"): (1, Decimal("0")) for source in ("before", "released", "after")
    }


async def test_transaction_committed_with_a_savepoint_still_open_writes_every_count(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        async with session.begin():
            await _apply(session, [_incoming(_received(source="outer"))])
            await session.begin_nested()
            await _apply(session, [_incoming(_received(source="inner"))])
        assert not session.in_transaction()

    assert await _counters(sessions) == {
        (MAY_1, "outer", "received"): (1, Decimal("0")),
        (MAY_1, "inner", "received"): (1, Decimal("0")),
    }


async def test_counts_written_by_a_savepoint_that_then_fails_to_commit_are_written_again_with_their_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await _apply(session, [_incoming(_received(source="outer"))])

        def refuse_savepoint(sync_session: Session) -> None:
            # Runs after the counts were written inside the savepoint, and fails its commit.
            if sync_session.in_nested_transaction():
                raise PoisonEvent("savepoint refused")

        event.listen(session.sync_session, "before_commit", refuse_savepoint)
        try:
            with pytest.raises(PoisonEvent):
                async with session.begin_nested():
                    await _apply(session, [_incoming(_received(source="inner"))])
        finally:
            event.remove(session.sync_session, "before_commit", refuse_savepoint)

    assert await _counters(sessions) == {(MAY_1, "outer", "received"): (1, Decimal("0"))}


async def test_transaction_rolled_back_after_a_released_savepoint_counts_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        with pytest.raises(PoisonEvent):
            async with session.begin():
                await _apply(session, [_incoming(_received(source="outer"))])
                async with session.begin_nested():
                    await _apply(session, [_incoming(_received(source="inner"))])
                raise PoisonEvent("after the savepoint")

    assert await _counters(sessions) == {}


async def test_redelivered_event_is_counted_once(
    sessions: async_sessionmaker[AsyncSession], embedded_log: EmbeddedLog
) -> None:
    consumer = EventConsumer(group=GROUP, handlers=HANDLERS, bus=embedded_log, sessions=sessions, clock=lambda: NOW)
    record = Record.from_event(CloudEvent.wrap(_received(), source="/test"))

    await consumer.on_record(record)
    await consumer.on_record(record)

    assert await _counters(sessions) == {(MAY_1, "webinar", "received"): (1, Decimal("0"))}
