"""Runs a service's event handlers: decoding, the inbox, retries and the dead-letter queue.

Handlers know nothing of the broker: ``async def on_lead_received(event: Incoming[LeadReceived],
session) -> None``. The annotation says which event a handler takes (``handlers()`` reads it), the
runner hands it the typed payload, and the handler changes state through the session it is given;
the inbox row and its changes commit together.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import typing
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from baton.bus import Bus, Record
from baton.db import dialect_insert
from baton.events import EVENT_MODELS, Clock, CloudEvent, EventData, dlq_topic, utcnow
from baton.failures import is_transient
from baton.outbox import InboxEntry, decode_record
from baton.telemetry import CONSUMER_BATCH_SECONDS, CONSUMER_EVENTS, DLQ_EVENTS, UNKNOWN_TYPE

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


def consumer_topics(handlers: Mapping[str, EventHandler]) -> list[str]:
    """The topics a consumer group reads: those of the events it has handlers for.

    Args:
        handlers: Event type to handler.

    Returns:
        The topics, sorted.
    """
    return sorted({EVENT_MODELS[event_type].topic for event_type in handlers if event_type in EVENT_MODELS})


TYPE_HEADER = "ce_type"
"""The CloudEvents binary-mode header naming an event's type (see ``baton.events.to_binary``)."""

REPLAY_FOR_GROUP_HEADER = "baton_replay_for_group"
"""Set on a record put back from a DLQ: only the consumer group that parked it applies it again."""

MAX_RETRY_PAUSE_SECONDS = 5.0


@dataclass(frozen=True)
class _Decoded:
    record: Record
    event: CloudEvent
    payload: EventData
    handler: EventHandler


class EventConsumer:
    """One consumer group: applies each event exactly once in effect, or parks it in the topic's DLQ.

    A batch of records is applied in one transaction: the inbox rows, the handlers' changes and the
    events they emit commit together. A transient failure (see ``baton.failures``) is retried with
    backoff until it passes, never moving past the batch; any other failure makes the consumer
    apply the batch one event per transaction, so that only the event whose failure repeats
    ``max_attempts`` times goes to ``<topic>.dlq`` and the rest are applied.
    """

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
        self.topics = consumer_topics(handlers)

    async def run(self) -> None:
        """Consumes until cancelled."""
        await self.bus.consume(self.group, self.topics, self.on_batch)

    async def on_record(self, record: Record) -> None:
        """Applies one record (a batch of one)."""
        await self.on_batch([record])

    async def on_batch(self, records: Sequence[Record]) -> None:
        """Applies a batch of records in order; returns once each is applied or dead-lettered."""
        started = time.perf_counter()
        try:
            await self._on_batch(records)
        finally:
            CONSUMER_BATCH_SECONDS.labels(self.group).observe(time.perf_counter() - started)

    async def _on_batch(self, records: Sequence[Record]) -> None:
        decoded: list[_Decoded] = []
        for record in records:
            replay_for = record.header(REPLAY_FOR_GROUP_HEADER)
            if replay_for is not None and replay_for != self.group:
                continue
            named_type = record.header(TYPE_HEADER)
            if named_type in EVENT_MODELS and named_type not in self.handlers:
                continue  # another group's event: its body is never read (an unknown type is decoded, to the DLQ)
            try:
                event = decode_record(record)
                handler = self.handlers.get(event.type)
                if handler is None:
                    continue
                payload = event.payload()
            except Exception as exc:
                # Undecodable, or a schema violation: no retry will change that.
                await self._dead_letter(record, exc, attempts=1)
                continue
            decoded.append(_Decoded(record, event, payload, handler))
        if not decoded:
            return
        try:
            await self._until_not_transient(lambda: self._apply(decoded), what="batch", size=len(decoded))
            return
        except Exception:
            if len(decoded) == 1:
                await self._apply_alone(decoded[0], first_failure_counted=True)
                return
            logger.warning(
                "batch failed; applying its events one at a time",
                exc_info=True,
                extra={"group": self.group, "size": len(decoded)},
            )
        for item in decoded:
            await self._apply_alone(item, first_failure_counted=False)

    async def _apply_alone(self, item: _Decoded, *, first_failure_counted: bool) -> None:
        attempt = 1 if first_failure_counted else 0
        while True:
            try:
                await self._until_not_transient(lambda: self._apply([item]), what="event", size=1)
                return
            except Exception as exc:
                attempt += 1
                logger.warning(
                    "event handler failed",
                    exc_info=True,
                    extra={
                        "group": self.group,
                        "event_id": item.event.id,
                        "event_type": item.event.type,
                        "attempt": attempt,
                    },
                )
                if attempt >= self.max_attempts:
                    await self._dead_letter(item.record, exc, attempts=attempt)
                    return
                await asyncio.sleep(self.retry_pause_seconds * attempt)

    async def _until_not_transient(self, work: Callable[[], Awaitable[None]], *, what: str, size: int) -> None:
        pause = self.retry_pause_seconds
        while True:
            try:
                await work()
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                logger.warning(
                    "transient failure; trying again",
                    extra={"group": self.group, "what": what, "size": size, "error": repr(exc)[:300], "pause": pause},
                )
            await asyncio.sleep(pause)
            pause = min(max(pause * 2, 0.05), MAX_RETRY_PAUSE_SECONDS)

    async def _apply(self, items: Sequence[_Decoded]) -> None:
        outcomes: Counter[tuple[str, str]] = Counter()
        async with self.sessions() as session, session.begin():
            begin_batch(session, (item.payload.lead_id for item in items))
            fresh = await _claim_inbox(session, self.group, [item.event.id for item in items])
            for item in items:
                if item.event.id not in fresh:
                    outcomes[item.event.type, "duplicate"] += 1
                    continue
                outcomes[item.event.type, "applied"] += 1
                fresh.discard(item.event.id)  # the same event twice in one batch is applied once
                event = item.event
                incoming = Incoming(
                    id=event.id, source=event.source, time=event.time, data=item.payload, now=self.clock()
                )
                await item.handler(incoming, session)
        # Counted once committed: a batch that rolls back and is tried again counts once.
        for (event_type, outcome), count in outcomes.items():
            CONSUMER_EVENTS.labels(self.group, event_type, outcome).inc(count)

    async def _dead_letter(self, record: Record, error: Exception, *, attempts: int) -> None:
        logger.error(
            "event sent to the dead-letter queue",
            extra={"group": self.group, "topic": record.topic, "offset": record.offset, "error": repr(error)[:300]},
        )
        headers = (
            *(h for h in record.headers if h[0] != REPLAY_FOR_GROUP_HEADER),
            ("baton_error", repr(error)[:1000].encode()),
            ("baton_attempts", str(attempts).encode()),
            ("baton_consumer_group", self.group.encode()),
            ("baton_original_topic", record.topic.encode()),
            ("baton_original_offset", f"{record.partition}:{record.offset}".encode()),
        )
        dead = Record(topic=dlq_topic(record.topic), key=record.key, value=record.value, headers=headers)
        await self._until_not_transient(lambda: self.bus.publish([dead]), what="dead letter", size=1)
        CONSUMER_EVENTS.labels(self.group, record.header(TYPE_HEADER) or UNKNOWN_TYPE, "dead_lettered").inc()
        DLQ_EVENTS.labels(self.group, record.topic).inc()


_BATCH_KEY = "baton_consumer_batch"


def begin_batch(session: AsyncSession, lead_ids: Iterable[str]) -> None:
    """Tells the handlers about to run in the session's transaction which leads their batch holds.

    The consumer calls it before it applies a batch, so that a lookup such as ``LeadSet.holds``
    reads what it needs for every lead of the batch at once instead of once per event.

    Args:
        session: The session the batch is applied in, its transaction begun.
        lead_ids: The lead id of every event in the batch.
    """
    session.info[_BATCH_KEY] = (session.sync_session.get_transaction(), frozenset(lead_ids))


def batch_lead_ids(session: AsyncSession) -> frozenset[str]:
    """Returns the leads of the batch being applied in the session's transaction.

    Args:
        session: A handler's session.

    Returns:
        The lead ids ``begin_batch`` named, or none outside a consumer's batch.
    """
    batch: tuple[object, frozenset[str]] | None = session.info.get(_BATCH_KEY)
    if batch is None or batch[0] is not session.sync_session.get_transaction():
        return frozenset()
    return batch[1]


@dataclass
class _LeadSetSeen:
    transaction: object
    looked_up: set[str]
    found: set[str]


@dataclass(frozen=True)
class LeadSet:
    """The leads that have a row in a table keyed by lead id, looked up once per batch rather than once per event.

    The first question in a transaction reads the rows of every lead in the consumer's batch (see
    ``begin_batch``) with one query; later questions about those leads are answered from it, and a
    lead outside the batch costs one more query. Rows the transaction writes itself are told with ``add``.

    Attributes:
        column: The table's lead-id column, e.g. ``ErasedLead.lead_id``.
    """

    column: InstrumentedAttribute[str]

    async def holds(self, session: AsyncSession, lead_id: str) -> bool:
        """Tells whether the table has a row for a lead.

        Args:
            session: A handler's session.
            lead_id: The lead asked about.

        Returns:
            True when the row exists, committed or written earlier in this transaction.
        """
        seen = self._seen(session)
        if lead_id not in seen.looked_up:
            wanted = (batch_lead_ids(session) - seen.looked_up) | {lead_id}
            seen.found.update(await session.scalars(select(self.column).where(self.column.in_(wanted))))
            seen.looked_up.update(wanted)
        return lead_id in seen.found

    def add(self, session: AsyncSession, lead_id: str) -> None:
        """Records that the session's transaction wrote the row of a lead.

        Args:
            session: The session that wrote it.
            lead_id: The lead.
        """
        seen = self._seen(session)
        seen.looked_up.add(lead_id)
        seen.found.add(lead_id)

    def _seen(self, session: AsyncSession) -> _LeadSetSeen:
        key = f"baton_lead_set:{self.column.class_.__tablename__}"
        transaction = session.sync_session.get_transaction()
        seen: _LeadSetSeen | None = session.info.get(key)
        if seen is None or seen.transaction is not transaction:
            seen = _LeadSetSeen(transaction=transaction, looked_up=set(), found=set())
            session.info[key] = seen
        return seen


async def _claim_inbox(session: AsyncSession, group: str, event_ids: Sequence[str]) -> set[str]:
    """Records event ids as applied by the group; returns those not applied before.

    Concurrent claims of one id (two replicas, or a redelivery racing the original) are settled
    by the inbox's primary key: PostgreSQL makes the second wait for the first to commit and then
    skips it; SQLite serialises the writers.
    """
    now = utcnow()
    rows = [
        {"consumer_group": group, "event_id": event_id, "processed_at": now} for event_id in dict.fromkeys(event_ids)
    ]
    if not rows:
        return set()
    statement = _claim_statement(session.get_bind().dialect.name)
    return set((await session.scalars(statement, rows)).all())


@functools.cache
def _claim_statement(dialect: str) -> Any:
    # Built once per dialect and run over the batch's rows: a multi-row VALUES built for every batch
    # cost more CPU to construct and compile than the database took to run it.
    inbox = typing.cast(Table, InboxEntry.__table__)
    return (
        dialect_insert(dialect)(inbox)
        .on_conflict_do_nothing(index_elements=["consumer_group", "event_id"])
        .returning(inbox.c.event_id)
    )
