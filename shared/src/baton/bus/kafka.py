"""The Kafka transport: idempotent producer with acks=all, manual commits after the handler returns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from baton.bus import Record, RecordHandler, handle_or_pause
from baton.events import TOPICS, dlq_topic

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 3.0


def _log_reconnect_failure(task: asyncio.Task[AIOKafkaProducer]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("kafka producer could not reconnect", exc_info=task.exception())


class KafkaBus:
    """Apache Kafka through aiokafka; Baton's topics are created on start when missing.

    ``prefix`` is prepended to topic and group names on the wire only: callers always see Baton's
    own topic names.
    """

    def __init__(
        self,
        *,
        bootstrap_servers: str,
        partitions: int = 3,
        replication_factor: int = 1,
        client_id: str = "baton",
        prefix: str = "",
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.client_id = client_id
        self.prefix = prefix
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._reconnecting: asyncio.Task[AIOKafkaProducer] | None = None

    async def start(self) -> None:
        await self.ensure_topics([*TOPICS, *(dlq_topic(t) for t in TOPICS)])
        await self._producer_or_new()

    async def stop(self) -> None:
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        async with self._producer_lock:
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Creates the topics that do not exist yet.

        Args:
            topics: Topic names.
        """
        topics = [self.prefix + t for t in topics]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                try:
                    await admin.create_topics([NewTopic(t, self.partitions, self.replication_factor) for t in missing])
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()

    async def _producer_or_new(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def _discard_producer(self) -> None:
        async with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await producer.stop()
            except Exception:
                logger.warning("closing a failed producer raised", exc_info=True)

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        producer = await self._producer_or_new()
        try:
            futures = [
                await producer.send(self.prefix + r.topic, value=r.value, key=r.key.encode(), headers=list(r.headers))
                for r in records
            ]
            await asyncio.gather(*futures)
        except KafkaError:
            # The outcome of the in-flight sends is unknown: a fresh producer (new idempotence
            # session) lets the caller retry cleanly, and consumers' inboxes absorb any duplicate.
            await self._discard_producer()
            raise

    async def ping(self) -> bool:
        producer = self._producer
        if producer is None:
            # Reconnect in the background: a readiness probe must answer fast, and a producer
            # abandoned half-started would leak its connections.
            if self._reconnecting is None or self._reconnecting.done():
                self._reconnecting = asyncio.create_task(self._producer_or_new())
                self._reconnecting.add_done_callback(_log_reconnect_failure)
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=PING_TIMEOUT_SECONDS)
        except Exception:
            logger.warning("kafka unreachable", exc_info=True)
            return False
        return True

    async def consume(self, group: str, topics: Sequence[str], handler: RecordHandler) -> None:
        consumer = AIOKafkaConsumer(
            *(self.prefix + t for t in topics),
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            group_id=self.prefix + group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            metadata_max_age_ms=10_000,
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                for partition, messages in batches.items():
                    await self._handle_partition(consumer, partition, messages, handler, group)
        finally:
            await consumer.stop()

    async def _handle_partition(
        self,
        consumer: AIOKafkaConsumer,
        partition: TopicPartition,
        messages: list[ConsumerRecord[bytes, bytes]],
        handler: RecordHandler,
        group: str,
    ) -> None:
        committable: int | None = None
        try:
            for message in messages:
                record = Record(
                    topic=message.topic.removeprefix(self.prefix),
                    key=(message.key or b"").decode(),
                    value=message.value or b"",
                    headers=tuple(message.headers),
                    partition=message.partition,
                    offset=message.offset,
                )
                if not await handle_or_pause(handler, record, group=group):
                    consumer.seek(partition, message.offset)
                    return
                committable = message.offset + 1
        finally:
            if committable is not None:
                await self._commit(consumer, partition, committable, group)

    async def _commit(self, consumer: AIOKafkaConsumer, partition: TopicPartition, offset: int, group: str) -> None:
        try:
            await consumer.commit({partition: offset})
        except KafkaError:
            # The group rebalanced; the new owner reads from the last commit and the inbox makes
            # the repeat harmless.
            logger.warning("offset commit failed", exc_info=True, extra={"group": group})
