"""Runs a service's event handlers: decoding, the inbox, retries and the dead-letter queue.

Handlers know nothing of the broker: ``async def on_lead_received(event: Incoming[LeadReceived],
session) -> None``. The annotation says which event a handler takes (``handlers()`` reads it), the
runner hands it the typed payload, and the handler changes state through the session it is given;
the inbox row and its changes commit together.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.bus import Bus, Record
from baton.events import EVENT_MODELS, Clock, CloudEvent, EventData, dlq_topic, utcnow
from baton.outbox import InboxEntry, decode_record

logger = logging.getLogger(__name__)

PayloadT = TypeVar("PayloadT", bound=EventData, covariant=True)


@dataclass(frozen=True)
class Incoming(Generic[PayloadT]):
    """An event as its handler receives it.

    Attributes:
        id: The CloudEvents id.
        source: The producing service.
        time: When the event happened, by its producer.
        data: The typed, validated payload.
        now: The consumer's clock when it applies the event; handlers use it instead of the wall clock.
    """

    id: str
    source: str
    time: datetime
    data: PayloadT
    now: datetime


EventHandler = Callable[[Incoming[Any], AsyncSession], Awaitable[None]]


def handlers(*functions: EventHandler) -> dict[str, EventHandler]:
    """Builds a consumer's handler table from the payload type each handler's signature names.

    Args:
        *functions: Handlers whose first parameter is annotated ``Incoming[SomeEvent]``.

    Returns:
        Event type to handler.

    Raises:
        TypeError: A handler's first parameter does not name an event, or two handlers name the same one.
    """
    table: dict[str, EventHandler] = {}
    for function in functions:
        hints = typing.get_type_hints(function)
        first = next(iter(hints.values()), None)
        args = typing.get_args(first)
        if typing.get_origin(first) is not Incoming or not args or not issubclass(args[0], EventData):
            raise TypeError(f"{function.__name__}: annotate its first parameter as Incoming[<event model>]")
        event_type = args[0].event_type
        if event_type in table:
            raise TypeError(f"two handlers for {event_type}: {table[event_type].__name__} and {function.__name__}")
        table[event_type] = function
    return table


class _AlreadyApplied(Exception):
    pass


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
        clock: Clock = utcnow,
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
        self.clock = clock
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
                payload = event.payload()
                incoming = Incoming(id=event.id, source=event.source, time=event.time, data=payload, now=self.clock())
                await handler(incoming, session)
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
