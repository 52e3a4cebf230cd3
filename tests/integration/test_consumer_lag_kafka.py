"""Consumer lag on a real Kafka: what a group has still to apply, per partition, from its committed offsets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from baton.bus import Record
from baton.bus.kafka import KafkaBus
from baton.events import LEADS_INGESTED, LEADS_SCORED
from tests.conftest import KAFKA_BOOTSTRAP

pytestmark = pytest.mark.integration

WAIT_SECONDS = 60.0
PARTITIONS = 3
SENTINEL = "sentinel"


@pytest.fixture
async def kafka_bus(unique_name: str) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(
        bootstrap_servers=KAFKA_BOOTSTRAP, prefix=f"{unique_name}.", partitions=PARTITIONS, replication_factor=1
    )
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


async def test_lag_shows_a_groups_backlog_per_partition_and_zero_once_it_caught_up(kafka_bus: KafkaBus) -> None:
    topics = [LEADS_INGESTED, LEADS_SCORED]
    await kafka_bus.publish([Record(topic=LEADS_INGESTED, key=f"lead-{i}", value=b"{}") for i in range(12)])

    before = await kafka_bus.lag("lag-readers", topics)

    seen: list[Record] = []
    all_seen, sentinel_seen = asyncio.Event(), asyncio.Event()

    async def handler(batch: Sequence[Record]) -> None:
        seen.extend(batch)
        if any(record.key == SENTINEL for record in batch):
            # The consumer loop commits a batch before it fetches the next: every earlier batch is committed.
            sentinel_seen.set()
            await asyncio.Future()  # held until the consumer is cancelled
        if sum(record.topic == LEADS_INGESTED for record in seen) >= 12:
            all_seen.set()

    consuming = asyncio.create_task(kafka_bus.consume("lag-readers", topics, handler))
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            await all_seen.wait()
            await kafka_bus.publish([Record(topic=LEADS_SCORED, key=SENTINEL, value=b"{}")])
            await sentinel_seen.wait()
        caught_up = await kafka_bus.lag("lag-readers", topics)
    finally:
        consuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming

    partitions = {(topic, p) for topic in topics for p in range(PARTITIONS)}
    assert set(before) == partitions
    assert sum(before[LEADS_INGESTED, p] for p in range(PARTITIONS)) == 12
    assert len([p for p in range(PARTITIONS) if before[LEADS_INGESTED, p]]) > 1, "keys spread over partitions"
    assert all(before[LEADS_SCORED, p] == 0 for p in range(PARTITIONS))
    assert set(caught_up) == partitions
    assert all(caught_up[LEADS_INGESTED, p] == 0 for p in range(PARTITIONS)), caught_up
    # Only the record the consumer still holds is outstanding.
    assert sorted(caught_up[LEADS_SCORED, p] for p in range(PARTITIONS)) == [0, 0, 1]


async def test_lag_of_a_group_that_never_committed_counts_everything_the_partitions_hold(kafka_bus: KafkaBus) -> None:
    await kafka_bus.publish([Record(topic=LEADS_SCORED, key=f"lead-{i}", value=b"{}") for i in range(5)])

    lag = await kafka_bus.lag("never-ran", [LEADS_SCORED])

    assert set(lag) == {(LEADS_SCORED, p) for p in range(PARTITIONS)}
    assert sum(lag.values()) == 5
