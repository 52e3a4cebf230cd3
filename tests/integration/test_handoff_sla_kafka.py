"""Two handoff replicas on the real PostgreSQL and Kafka, on the wall clock, with a two-second accept SLA."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from baton.bus import Record
from baton.events import LEADS_HANDOFF, CloudEvent, LeadAssigned, SlaBreached, utcnow
from baton.outbox import decode_record
from baton_handoff.settings import HandoffSettings
from tests.conftest import KAFKA_BOOTSTRAP
from tests.unit.test_handoff_api import qualified, written_events
from tests.unit.test_handoff_sla import ANA, BEN, breaches, running_at, started

pytestmark = pytest.mark.integration

# Two breaches of two seconds each, the routing before them and Kafka's group joins, with room to spare.
ESCALATION_TIMEOUT_SECONDS = 60


@pytest.fixture
async def settings(
    tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]], unique_name: str
) -> HandoffSettings:
    return HandoffSettings(
        data_dir=tmp_path,
        database_url=await fresh_database("handoff"),
        bus="kafka",
        kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
        kafka_topic_prefix=f"{unique_name}.",
        kafka_replication_factor=1,
    )


async def test_a_two_second_accept_sla_breaches_reassigns_breaches_again_and_escalates_each_breach_published_once(
    settings: HandoffSettings,
) -> None:
    seen: list[CloudEvent] = []
    escalated = asyncio.Event()

    async def watch(batch: Sequence[Record]) -> None:
        for record in batch:
            event = decode_record(record)
            seen.append(event)
            if event.type == SlaBreached.event_type and SlaBreached.model_validate(event.data).action == "escalated":
                escalated.set()

    async with (
        started(settings, ANA, BEN, clock=utcnow, max_attempts=2) as handoff,
        running_at(settings, utcnow) as replica,
    ):
        watching = asyncio.create_task(handoff.runtime.bus.consume("sla-watch", [LEADS_HANDOFF], watch))
        try:
            lead = CloudEvent.wrap(qualified("lead-1"), source="/baton/scoring")
            await replica.runtime.bus.publish([Record.from_event(lead)])
            async with asyncio.timeout(ESCALATION_TIMEOUT_SECONDS):
                await escalated.wait()
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        after = await handoff.assignments()

    assert [(a["attempt"], a["status"], a["team"]) for a in after] == [
        (1, "reassigned", "emea"),
        (2, "reassigned", "emea"),
        (3, "queued", "emea-leads"),
    ]
    assert {after[0]["rep_id"], after[1]["rep_id"]} == {"rep-ana", "rep-ben"}
    assert after[2]["rep_id"] is None
    # In the order the topic holds them: each assignment begins, then its breach ends it.
    assert [(e.type, e.data.get("attempt") or e.data.get("action")) for e in seen] == [
        (LeadAssigned.event_type, 1),
        (SlaBreached.event_type, "reassigned"),
        (LeadAssigned.event_type, 2),
        (SlaBreached.event_type, "escalated"),
    ]
    published = breaches(await written_events(settings, SlaBreached.event_type))
    assert Counter((b.assignment_id, b.sla, b.action) for b in published) == {
        (after[0]["assignment_id"], "accept", "reassigned"): 1,
        (after[1]["assignment_id"], "accept", "escalated"): 1,
    }
    assert all(b.due_at <= b.breached_at for b in published)
