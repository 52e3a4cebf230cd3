"""The Kafka transport's producer handling, with aiokafka's producer replaced by a fake collaborator."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

import baton.bus.kafka
from baton.bus import Record
from baton.bus.kafka import KafkaBus


class FakeProducer:
    """Records what it is asked to send; the first instance's sends time out when told to."""

    instances: list[FakeProducer] = []
    fail_first_instance = True
    one_started = asyncio.Event()

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.started = self.stopped = False
        self.fails = self.fail_first_instance and not self.instances
        self.instances.append(self)
        self.client = self

    async def fetch_all_metadata(self) -> None:
        if not self.started or self.stopped:
            raise KafkaTimeoutError()

    async def start(self) -> None:
        self.started = True
        self.one_started.set()

    async def stop(self) -> None:
        self.stopped = True

    async def send(
        self, topic: str, *, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fails:
            future.set_exception(KafkaTimeoutError())
        else:
            self.sent.append((topic, key, value, headers))
            future.set_result(None)
        return future


@pytest.fixture
def fake_producer(monkeypatch: pytest.MonkeyPatch) -> type[FakeProducer]:
    FakeProducer.instances = []
    FakeProducer.one_started = asyncio.Event()
    monkeypatch.setattr(baton.bus.kafka, "AIOKafkaProducer", FakeProducer)
    return FakeProducer


RECORD = Record(topic="leads.ingested", key="lead-1", value=b"{}", headers=(("ce_id", b"e1"),))


async def test_producer_is_rebuilt_after_a_send_whose_outcome_is_unknown(fake_producer: type[FakeProducer]) -> None:
    fake_producer.fail_first_instance = True
    bus = KafkaBus(bootstrap_servers="127.0.0.1:1")

    with pytest.raises(KafkaTimeoutError):
        await bus.publish([RECORD])
    await bus.publish([RECORD])

    first, second = fake_producer.instances
    assert first.stopped, "the producer with unknown in-flight sends must be discarded"
    assert second.started and not second.stopped
    assert [sent[0] for sent in second.sent] == ["leads.ingested"]


async def test_readiness_reports_a_lost_producer_and_reconnects_in_the_background(
    fake_producer: type[FakeProducer],
) -> None:
    fake_producer.fail_first_instance = True
    bus = KafkaBus(bootstrap_servers="127.0.0.1:1")
    with pytest.raises(KafkaTimeoutError):
        await bus.publish([RECORD])

    fake_producer.one_started.clear()
    assert await bus.ping() is False
    async with asyncio.timeout(5):  # the background reconnection
        await fake_producer.one_started.wait()
    assert len(fake_producer.instances) == 2 and fake_producer.instances[1].started
    assert await bus.ping() is True
    await bus.stop()
    assert fake_producer.instances[1].stopped
