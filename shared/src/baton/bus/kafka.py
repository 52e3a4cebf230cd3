"""The Kafka transport: idempotent producer with acks=all, manual commits after the handler returns."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from baton.bus import BatchHandler, Record, handle_or_pause
from baton.events import TOPICS, dlq_topic

logger = logging.getLogger(__name__)

PING_TIMEOUT_SECONDS = 3.0


def _log_reconnect_failure(task: asyncio.Task[AIOKafkaProducer]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("kafka producer could not reconnect", exc_info=task.exception())


class TopicSetupFailed(RuntimeError):
    """Kafka refused to create one of Baton's topics."""


class _OwnedPartitions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tracks which partitions this consumer still owns; a revocation waits for the batch in hand.

    Offsets are committed after every batch, so by the time a revocation gets the lock everything
    finished is committed; what was fetched but not handled is dropped and read by the next owner.
    """

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock
        self.lost: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            self.lost.update(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.lost.difference_update(assigned)


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
        replication_factor: int = 3,
        min_insync_replicas: int = 2,
        client_id: str = "baton",
        prefix: str = "",
        batch_size: int = 500,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.min_insync_replicas = min(min_insync_replicas, replication_factor)
        self.client_id = client_id
        self.prefix = prefix
        self.batch_size = batch_size
        self.max_message_bytes = max_message_bytes
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._reconnecting: asyncio.Task[AIOKafkaProducer] | None = None
        self._offset_readers: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None
        self._offset_readers_lock = asyncio.Lock()

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
        async with self._offset_readers_lock:
            await self._close_offset_readers()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Creates the topics that do not exist yet, replicated as configured.

        Args:
            topics: Topic names.

        Raises:
            TopicSetupFailed: Kafka refused a topic, e.g. a replication factor above the number of brokers.
        """
        topics = [self.prefix + t for t in topics]
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if not missing:
                return
            config = {"min.insync.replicas": str(self.min_insync_replicas)}
            response = await admin.create_topics(
                [NewTopic(t, self.partitions, self.replication_factor, topic_configs=config) for t in missing]
            )
        finally:
            await admin.close()
        failures = [
            f"{topic}: {error[0] if error else for_code(code).__name__}"
            for topic, code, *error in response.topic_errors
            if code not in (0, TopicAlreadyExistsError.errno)
        ]
        if failures:
            raise TopicSetupFailed(
                f"Kafka refused to create Baton's topics ({'; '.join(failures)}); replication factor "
                f"{self.replication_factor}, min.insync.replicas {self.min_insync_replicas} — a single-broker "
                "development cluster needs BATON_KAFKA_REPLICATION_FACTOR=1"
            )

    async def _producer_or_new(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id=self.client_id,
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    max_request_size=self.max_message_bytes + 64 * 1024,
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
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await producer.client.fetch_all_metadata()
        except Exception:
            logger.warning("kafka unreachable", exc_info=True)
            return False
        return True

    async def claim(self, name: str) -> None:
        """Kafka shares work between replicas through consumer groups: any number may run."""

    async def prune(self, *, before: datetime) -> int:
        """Kafka keeps its own retention (``retention.ms``); nothing to do here."""
        return 0

    async def lag(self, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        # The group's committed offsets (what its members have applied, wherever they run) against each
        # partition's end: one admin client and one group-less consumer, kept open between calls.
        async with self._offset_readers_lock:
            if self._offset_readers is None:
                self._offset_readers = await self._open_offset_readers()
            admin, reader = self._offset_readers
            try:
                names = [self.prefix + t for t in topics]
                described = await admin.describe_topics(names)
                partitions = [
                    TopicPartition(topic["topic"], p["partition"])
                    for topic in described
                    if topic["topic"] in names and not topic["error_code"]
                    for p in topic["partitions"]
                ]
                if not partitions:
                    return {}
                committed = await admin.list_consumer_group_offsets(self.prefix + group, partitions=partitions)
                ends = await reader.end_offsets(partitions)
                starts = await reader.beginning_offsets(partitions)
            except Exception:
                await self._close_offset_readers()
                raise
        lag: dict[tuple[str, int], int] = {}
        for tp in partitions:
            done = committed.get(tp)
            # Nothing committed yet: the group starts at the earliest record still kept.
            position = done.offset if done is not None and done.offset >= 0 else starts[tp]
            lag[tp.topic.removeprefix(self.prefix), tp.partition] = max(ends[tp] - position, 0)
        return lag

    async def _open_offset_readers(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        reader = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            await admin.start()
            await reader.start()
        except BaseException:
            await asyncio.shield(asyncio.gather(admin.close(), reader.stop(), return_exceptions=True))
            raise
        return admin, reader

    async def _close_offset_readers(self) -> None:
        readers, self._offset_readers = self._offset_readers, None
        if readers is not None:
            admin, reader = readers
            for outcome in await asyncio.gather(admin.close(), reader.stop(), return_exceptions=True):
                if isinstance(outcome, Exception):
                    logger.warning("closing the offset readers raised", exc_info=outcome)

    def _record(self, message: ConsumerRecord[bytes, bytes]) -> Record:
        return Record(
            topic=message.topic.removeprefix(self.prefix),
            key=(message.key or b"").decode(),
            value=message.value or b"",
            headers=tuple(message.headers),
            partition=message.partition,
            offset=message.offset,
        )

    async def read(self, topic: str) -> list[Record]:
        name = self.prefix + topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id)
        await admin.start()
        try:
            described = await admin.describe_topics([name])
        finally:
            await admin.close()
        partitions = [
            TopicPartition(name, p["partition"])
            for topic in described
            if topic["topic"] == name and not topic["error_code"]
            for p in topic["partitions"]
        ]
        if not partitions:
            return []
        try:
            await consumer.start()
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            records: list[Record] = []
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=1000, max_records=self.batch_size)
                for messages in batches.values():
                    records.extend(
                        self._record(m) for m in messages if m.offset < ends[TopicPartition(m.topic, m.partition)]
                    )
            return records
        finally:
            await consumer.stop()

    async def consume(self, group: str, topics: Sequence[str], handler: BatchHandler) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            group_id=self.prefix + group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            metadata_max_age_ms=10_000,
            max_poll_records=self.batch_size,
        )
        lock = asyncio.Lock()
        owned = _OwnedPartitions(lock)
        consumer.subscribe([self.prefix + t for t in topics], listener=owned)
        try:
            # Inside the try: a consumer cancelled while it joins the group must still be closed.
            await consumer.start()
            while True:
                fetched = await consumer.getmany(timeout_ms=500, max_records=self.batch_size)
                if fetched:
                    async with lock:
                        await self._handle_fetch(consumer, owned, fetched, handler, group)
        finally:
            await consumer.stop()

    async def _handle_fetch(
        self,
        consumer: AIOKafkaConsumer,
        owned: _OwnedPartitions,
        fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        handler: BatchHandler,
        group: str,
    ) -> None:
        """Hands what one fetch returned to the handler as one batch, then commits every partition's offset.

        One batch for all partitions keeps the per-batch cost (a transaction, an offset commit) low
        when records trickle in; each partition's records stay in order, and a lead lives in one partition.
        """
        mine = {
            tp: messages for tp, messages in fetched.items() if tp not in owned.lost and tp in consumer.assignment()
        }
        if not mine:
            return
        batch = [self._record(m) for messages in mine.values() for m in messages]
        if not await handle_or_pause(handler, batch, group=group):
            for partition, messages in mine.items():
                consumer.seek(partition, messages[0].offset)
            return
        try:
            await consumer.commit({partition: messages[-1].offset + 1 for partition, messages in mine.items()})
        except KafkaError:
            # The group rebalanced; the new owner reads from the last commit and the inbox makes
            # the repeat harmless.
            logger.warning("offset commit failed", exc_info=True, extra={"group": group})
