"""Transactional outbox and inbox.

A service writes its state change and its outgoing events in one transaction (``add_event``); the
``OutboxRelay`` publishes them right after the commit wakes it. A consumer records each event id in
its inbox in the same transaction as the state change the event causes, so redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, Text, delete, event, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, Session, mapped_column

from baton.bus import Bus, Record
from baton.db import Base, UTCDateTime, is_postgresql
from baton.errors import BatonError
from baton.events import CloudEvent, EventData, from_binary, utcnow
from baton.telemetry import OUTBOX_PUBLISHED

logger = logging.getLogger(__name__)

RELAY_KEY = "baton_outbox_relay"
SOURCE_KEY = "baton_event_source"
MAX_EVENT_BYTES_KEY = "baton_max_event_bytes"
DEFAULT_MAX_EVENT_BYTES = 512 * 1024
RELAY_LOCK_KEY = 0x0B470B0C  # one relay per database at a time keeps each lead's events in order
_PENDING_KEY = "baton_outbox_pending"


class OutboxEntry(Base):
    """An event waiting to be published, written in the transaction that caused it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    topic: Mapped[str] = mapped_column(String(255))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InboxEntry(Base):
    """An event a consumer group has already applied."""

    __tablename__ = "inbox"

    consumer_group: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EventTooLarge(BatonError):
    """An event would exceed what the bus carries; nothing of the change that caused it is kept."""

    status = 413
    title = "Content too large"


def _outbox_row(session: AsyncSession, data: EventData, source: str | None) -> tuple[CloudEvent, dict[str, Any]]:
    source = source or session.info.get(SOURCE_KEY)
    if not source:
        raise ValueError("add_event needs the producing service: pass source= or use the service's sessions")
    envelope = CloudEvent.wrap(data, source=source)
    payload = envelope.model_dump_json()
    size = len(payload.encode())
    limit = session.info.get(MAX_EVENT_BYTES_KEY, DEFAULT_MAX_EVENT_BYTES)
    if size > limit:
        raise EventTooLarge(
            f"the {envelope.type} event for this change would be {size} bytes; at most {limit} can be carried"
        )
    row = {
        "event_id": envelope.id,
        "topic": envelope.topic,
        "aggregate_id": envelope.subject,
        "type": envelope.type,
        "payload": payload,
        "created_at": envelope.time,
    }
    return envelope, row


def add_event(session: AsyncSession, data: EventData, *, source: str | None = None) -> CloudEvent:
    """Adds an event to the session's transaction; it is published once the transaction commits.

    Args:
        session: The session holding the state change that caused the event.
        data: The typed payload.
        source: The producing service, e.g. ``/baton/scoring``; by default the one the service's
            session factory names (``SOURCE_KEY`` in the session's ``info``).

    Returns:
        The envelope that will be published.

    Raises:
        ValueError: Neither ``source`` nor the session names the producing service.
        EventTooLarge: The event is larger than the service may produce (``max_event_bytes``).
    """
    envelope, row = _outbox_row(session, data, source)
    session.add(OutboxEntry(**row))
    session.info[_PENDING_KEY] = True
    return envelope


async def add_events(session: AsyncSession, events: Sequence[EventData]) -> list[CloudEvent]:
    """Adds several events to the session's transaction with one multi-row insert, in order.

    The same rules as ``add_event``, without an ORM object per event: for code that emits many
    events at once (a batch of leads, say).

    Args:
        session: The session holding the state change that caused the events.
        events: The typed payloads.

    Returns:
        The envelopes that will be published.

    Raises:
        EventTooLarge: One of the events is larger than the service may produce; none is added.
    """
    rows = [_outbox_row(session, data, None) for data in events]
    if rows:
        await session.execute(insert(OutboxEntry), [row for _, row in rows])
        session.info[_PENDING_KEY] = True
    return [envelope for envelope, _ in rows]


@event.listens_for(Session, "after_commit")
def _wake_relay_after_commit(session: Session) -> None:
    if session.info.pop(_PENDING_KEY, False):
        relay = session.info.get(RELAY_KEY)
        if relay is not None:
            relay.wake()


@event.listens_for(Session, "after_rollback")
def _forget_pending_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_KEY, None)


class OutboxRelay:
    """Publishes outbox rows in order and deletes them once the bus has them.

    On PostgreSQL, replicas of a service share the outbox; a transaction-scoped advisory lock lets
    one of them relay at a time, so events leave in the order they were written.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        bus: Bus,
        service: str = "",
        batch_size: int = 500,
        idle_check_seconds: float = 2.0,
        retry_pause_seconds: float = 1.0,
    ) -> None:
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.idle_check_seconds = idle_check_seconds
        self.retry_pause_seconds = retry_pause_seconds
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgresql = is_postgresql(engine)
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()
        """Set while the relay has published everything it found and waits for a wake-up."""

    def wake(self) -> None:
        """Asks the relay to publish now; safe to call from the event loop's thread at any time."""
        self._wake.set()

    async def run(self) -> None:
        """Publishes until cancelled: at once, on every wake-up, and every few seconds in case one was missed."""
        while True:
            self._wake.clear()
            try:
                while await self.publish_pending():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("outbox relay failed; retrying")
                await asyncio.sleep(self.retry_pause_seconds)
                continue
            self.idle.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_check_seconds):
                    await self._wake.wait()
            self.idle.clear()

    async def publish_pending(self) -> int:
        """Publishes one batch of pending events.

        Returns:
            How many events were published.
        """
        oldest = select(OutboxEntry.id).order_by(OutboxEntry.id).limit(self.batch_size).scalar_subquery()
        take = (
            delete(OutboxEntry)
            .where(OutboxEntry.id.in_(oldest))
            .returning(OutboxEntry.id, OutboxEntry.topic, OutboxEntry.payload)
        )
        async with self._sessions() as session, session.begin():
            if self._postgresql and not await session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}
            ):
                # Another replica is relaying; it publishes these rows too, in order.
                return 0
            # Taken and deleted in one statement; the deletion commits only once the bus has them.
            entries = sorted((await session.execute(take)).all())
            if not entries:
                return 0
            await self.bus.publish([Record.from_stored(topic, payload) for _, topic, payload in entries])
        OUTBOX_PUBLISHED.labels(self.service).inc(len(entries))
        return len(entries)

    async def backlog(self) -> int:
        """Counts the events waiting in the outbox (a count of rows, which the relay keeps few).

        Returns:
            How many rows the outbox holds.
        """
        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(OutboxEntry)) or 0)


def decode_record(record: Record) -> CloudEvent:
    """Decodes a bus record into its CloudEvents envelope.

    Args:
        record: A record in CloudEvents binary mode.

    Returns:
        The envelope.
    """
    return from_binary(record.headers, record.value)
