"""One small bus interface with two transports: Apache Kafka and the embedded durable log in SQLite."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from baton.events import CloudEvent, stored_to_binary, to_binary

if TYPE_CHECKING:
    from baton.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One message on a topic: key, headers and body, plus where it sits in the log."""

    topic: str
    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int = 0
    offset: int = -1

    @classmethod
    def from_event(cls, event: CloudEvent, *, topic: str | None = None) -> Record:
        """Encodes an event in CloudEvents binary mode, keyed by lead id.

        Args:
            event: The envelope.
            topic: Overrides the event's own topic.

        Returns:
            A record ready to publish.
        """
        key, headers, value = to_binary(event)
        return cls(topic=topic or event.topic, key=key, value=value, headers=tuple(headers))

    @classmethod
    def from_stored(cls, topic: str, envelope_json: str) -> Record:
        """Encodes an envelope as the outbox stores it (see ``baton.events.stored_to_binary``).

        Args:
            topic: Where it goes.
            envelope_json: The envelope's JSON.

        Returns:
            A record ready to publish.
        """
        key, headers, value = stored_to_binary(envelope_json)
        return cls(topic=topic, key=key, value=value, headers=tuple(headers))

    def header(self, name: str) -> str | None:
        """Returns a header decoded as UTF-8, or None.

        Args:
            name: Header name.

        Returns:
            The header's value.
        """
        for header_name, raw in self.headers:
            if header_name == name:
                return raw.decode(errors="replace")
        return None


BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]
"""Applies a batch of records; the transport moves the group's position past them only when it returns."""

HANDLER_RETRY_PAUSE_SECONDS = 1.0


async def handle_or_pause(handler: BatchHandler, batch: Sequence[Record], *, group: str) -> bool:
    """Calls a transport's handler; on failure logs it and pauses before the batch is read again.

    Args:
        handler: The consumer's handler.
        batch: The records to hand over.
        group: The consumer group, for the log.

    Returns:
        True when the handler succeeded, so the group's position may move past the batch.
    """
    try:
        await handler(batch)
    except Exception:
        logger.exception(
            "handler failed; the batch will be read again",
            extra={"group": group, "topic": batch[0].topic, "offset": batch[0].offset, "records": len(batch)},
        )
        await asyncio.sleep(HANDLER_RETRY_PAUSE_SECONDS)
        return False
    return True


class ReplicaRefused(RuntimeError):
    """A second replica of a service or consumer group tried to run on the embedded log."""


@runtime_checkable
class Bus(Protocol):
    """What services need from an event transport.

    ``publish`` returns only once every record is durably stored, in order. ``consume`` runs until
    cancelled, handing the handler batches of records (a lead's records in the order published) and
    committing the group's position past a batch only after the handler returns; a handler that
    raises gets the same batch again after a pause.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, records: Sequence[Record]) -> None: ...

    async def consume(self, group: str, topics: Sequence[str], handler: BatchHandler) -> None: ...

    async def read(self, topic: str) -> list[Record]:
        """Every record the topic holds now, oldest first (for operators' tools such as the DLQ)."""
        ...

    async def claim(self, name: str) -> None:
        """Claims a name for this process where the transport allows one owner only.

        Raises:
            ReplicaRefused: Another process holds it.
        """
        ...

    async def prune(self, *, before: datetime) -> int:
        """Drops records older than ``before`` that every consumer group has passed; returns how many."""
        ...

    async def ping(self) -> bool: ...

    async def lag(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """Records each partition of the topics holds past the group's committed position.

        A group that has committed nothing on a partition yet lags by everything the partition holds.

        Returns:
            ``{(topic, partition): records}`` for every partition of the topics.
        """
        ...


def make_bus(settings: Settings) -> Bus:
    """Builds the transport the settings choose.

    Args:
        settings: Service settings; ``bus`` picks the transport.

    Returns:
        A Kafka bus or an embedded-log bus, not yet started.
    """
    if settings.bus == "kafka":
        from baton.bus.kafka import KafkaBus

        return KafkaBus(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            min_insync_replicas=settings.kafka_topic_min_insync_replicas,
            prefix=settings.kafka_topic_prefix,
            batch_size=settings.consumer_batch_size,
            max_message_bytes=settings.max_event_bytes,
        )
    from baton.bus.embedded import EmbeddedLog

    return EmbeddedLog(settings.data_dir / "bus.db", batch_size=settings.consumer_batch_size)
