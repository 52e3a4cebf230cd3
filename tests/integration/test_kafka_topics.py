"""Baton's topics on a real Kafka: created as durable as configured, and a refusal is never hidden."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from baton.bus.kafka import KafkaBus, TopicSetupFailed
from baton.events import LEADS_HANDOFF, TOPICS, dlq_topic
from tests.conftest import KAFKA_BOOTSTRAP

pytestmark = pytest.mark.integration


async def _topic_config(name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        await admin.close()
    [(_, _, _, _, entries)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


async def test_start_creates_every_topic_and_dlq_with_the_configured_min_insync_replicas(unique_name: str) -> None:
    bus = KafkaBus(bootstrap_servers=KAFKA_BOOTSTRAP, prefix=f"{unique_name}.", replication_factor=1)
    await bus.start()
    await bus.stop()

    for topic in (*TOPICS, *(dlq_topic(t) for t in TOPICS)):
        config = await _topic_config(f"{unique_name}.{topic}")
        assert config["min.insync.replicas"] == "1", topic


async def test_a_topic_kafka_refuses_to_create_stops_the_start_with_the_reason_and_the_fix(unique_name: str) -> None:
    # The local development broker is a single node: three replicas cannot be placed.
    bus = KafkaBus(bootstrap_servers=KAFKA_BOOTSTRAP, prefix=f"{unique_name}.", replication_factor=3)

    with pytest.raises(TopicSetupFailed, match="BATON_KAFKA_REPLICATION_FACTOR=1") as refused:
        await bus.start()

    assert f"{unique_name}.{LEADS_HANDOFF}" in str(refused.value)
    assert "InvalidReplicationFactor" in str(refused.value) or "replication" in str(refused.value).lower()
