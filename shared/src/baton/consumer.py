"""Runs a service's event handlers: decoding, the inbox, retries and the dead-letter queue.

Handlers know nothing of the broker: ``async def on_lead_received(event, session) -> None``. They
change state through the session they are given; the inbox row and their changes commit together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.bus import Bus, Record
from baton.events import EVENT_MODELS, CloudEvent, dlq_topic
from baton.outbox import InboxEntry, decode_record

logger = logging.getLogger(__name__)


class _AlreadyApplied(Exception):
    pass


EventHandler = Callable[[CloudEvent, AsyncSession], Awaitable[None]]


class EventConsumer:
    """One consumer group: applies each event exactly once in effect, or parks it in the topic's DLQ."""

    def __init__(
        self,
        *,
        group: str,
        handlers: Mapping[str, EventHandler],
        bus: Bus,
        sessions: async_sessionmaker[AsyncSession],
        max_attempts: int = 3,
        retry_pause_seconds: float = 0.2,
    ) -> None:
        unknown = set(handlers) - set(EVENT_MODELS)
        if unknown:
            raise ValueError(f"handlers for unknown event types: {sorted(unknown)}")
        self.group = group
        self.handlers = dict(handlers)
        self.bus = bus
        self.sessions = sessions
        self.max_attempts = max_attempts
        self.retry_pause_seconds = retry_pause_seconds
        self.topics = sorted({EVENT_MODELS[event_type].topic for event_type in handlers})

    async def run(self) -> None:
        """Consumes until cancelled."""
        await self.bus.consume(self.group, self.topics, self.on_record)

    async def on_record(self, record: Record) -> None:
        """Applies one record; raises only when even the DLQ could not take it."""
        try:
            event = decode_record(record)
        except Exception as exc:
            await self._dead_letter(record, exc, attempts=1)
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            return
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._apply(event, handler)
                return
            except Exception as exc:
                logger.warning(
                    "event handler failed",
                    exc_info=True,
                    extra={"group": self.group, "event_id": event.id, "event_type": event.type, "attempt": attempt},
                )
                if attempt == self.max_attempts:
                    await self._dead_letter(record, exc, attempts=attempt)
                    return
                await asyncio.sleep(self.retry_pause_seconds * attempt)

    async def _apply(self, event: CloudEvent, handler: EventHandler) -> None:
        try:
            async with self.sessions() as session, session.begin():
                if await session.get(InboxEntry, (self.group, event.id)) is not None:
                    return
                session.add(InboxEntry(consumer_group=self.group, event_id=event.id))
                try:
                    await session.flush()
                except IntegrityError as exc:
                    raise _AlreadyApplied from exc
                await handler(event, session)
        except _AlreadyApplied:
            # Another replica applied it between our look-up and our insert.
            return

    async def _dead_letter(self, record: Record, error: Exception, *, attempts: int) -> None:
        logger.error(
            "event sent to the dead-letter queue",
            extra={"group": self.group, "topic": record.topic, "offset": record.offset, "error": repr(error)},
        )
        headers = (
            *record.headers,
            ("baton_error", repr(error)[:1000].encode()),
            ("baton_attempts", str(attempts).encode()),
            ("baton_consumer_group", self.group.encode()),
            ("baton_original_topic", record.topic.encode()),
        )
        await self.bus.publish(
            [Record(topic=dlq_topic(record.topic), key=record.key, value=record.value, headers=headers)]
        )
