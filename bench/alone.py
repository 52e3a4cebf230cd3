"""scoring alone and metrics alone: events published straight onto the topics each service reads.

No lead goes through intake, so each figure is the service's own:

* scoring alone: ``lead.received`` events published onto ``leads.ingested``, timed until each lead's
  ``lead.scored`` is seen on ``leads.scored`` (an observer of the bus: nothing is asked of scoring).
  The leads are nurture leads that do not qualify, so handoff stays idle;
* metrics alone: a lead's life as handoff sees it (received, qualified, assigned, accepted) published
  onto the three topics, timed until metrics applied them, read from its own
  ``baton_consumer_events_total{group="metrics"}`` counter on ``/metrics``, which it updates as each
  transaction commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from baton.bus import Bus, Record
from baton.events import (
    LEADS_SCORED,
    CloudEvent,
    EventData,
    LeadAssigned,
    LeadQualified,
    LeadReceived,
    LeadScored,
    LeadStatusChanged,
    new_id,
    utcnow,
)
from bench.pipeline import (
    AssignmentWatcher,
    Baton,
    EmbeddedAssignments,
    KafkaAssignments,
    hand_raiser,
    until_still,
)
from bench.routing import make_room, publish_all, qualified_record, saturated_rate, scored_bus

INGEST_SOURCE = "/baton/lead-ingest"
HANDOFF_SOURCE = "/baton/handoff"
METRICS_GROUP = "metrics"
SCORED = LeadScored.event_type
MIX = (LeadReceived.event_type, LeadQualified.event_type, LeadAssigned.event_type, LeadStatusChanged.event_type)
"""What metrics alone publishes per lead, one of each."""
PEOPLE_PER_ACCOUNT = 4
POLL_SECONDS = 0.1


def nurture_lead(tag: str, n: int) -> dict[str, Any]:
    """A realistic lead the default model scores below the MQL threshold (no activity, a manager of a small
    company), at a company of a few people: an account of its own, as most are."""
    lead = hand_raiser(tag, n)
    company = f"account-{tag}-{n // PEOPLE_PER_ACCOUNT}.example.com"
    lead.update(
        email=f"{lead['first_name'].lower()}.{n}@{company}",
        title="Marketing Manager",
        company_size=80,
        activities=[],
    )
    return lead


def received_record(lead_id: str, lead: Mapping[str, Any]) -> Record:
    """A lead's ``lead.received`` as lead-ingest would publish it, ready for ``leads.ingested``.

    Args:
        lead_id: The lead.
        lead: A lead as posted to intake.

    Returns:
        The record.
    """
    received = LeadReceived.model_validate({**lead, "lead_id": lead_id, "received_at": utcnow()})
    return Record.from_event(CloudEvent.wrap(received, source=INGEST_SOURCE))


def mix_records(lead_id: str, lead: Mapping[str, Any], *, rep_id: str) -> list[Record]:
    """A lead's life as metrics sees it: received, qualified, assigned to ``rep_id``, accepted a minute later.

    Args:
        lead_id: The lead.
        lead: A lead as posted to intake.
        rep_id: The rep it is assigned to.

    Returns:
        The four records, in the order they happen.
    """
    now = utcnow()
    where = {"lead_id": lead_id, "assignment_id": new_id(), "rep_id": rep_id, "team": "bench"}
    dimensions = {"source": lead.get("source"), "campaign": lead.get("campaign")}
    handoff: list[EventData] = [
        LeadAssigned(
            **where,
            **dimensions,
            rule="bench",
            attempt=1,
            accept_due_at=now + timedelta(hours=1),
            touch_due_at=now + timedelta(hours=4),
        ),
        LeadStatusChanged(**where, **dimensions, status="accepted", occurred_at=now + timedelta(minutes=1)),
    ]
    return [received_record(lead_id, lead), qualified_record(lead_id, lead)] + [
        Record.from_event(CloudEvent.wrap(event, source=HANDOFF_SOURCE)) for event in handoff
    ]


async def scored_rate(
    bus: Bus, watcher: AssignmentWatcher, *, tag: str, leads: int, wait_seconds: float
) -> dict[str, Any]:
    """Saturated: publishes ``leads`` ``lead.received`` as fast as the bus takes them, then waits for every score.

    Args:
        bus: The system's bus.
        watcher: Sees ``lead.scored`` on ``leads.scored``; must be running.
        tag: Makes e-mails unique.
        leads: How many leads.
        wait_seconds: How long to wait for the last scores.

    Returns:
        As ``bench.routing.saturated_rate`` gives it, with ``scored`` counting the leads seen scored.
    """
    ids = [new_id() for _ in range(leads)]
    made = [(lead_id, received_record(lead_id, nurture_lead(tag, n))) for n, lead_id in enumerate(ids)]
    return await saturated_rate(bus, watcher, made, seen_as="scored", wait_seconds=wait_seconds)


def applied_events(exposition: str, group: str = METRICS_GROUP) -> dict[str, int]:
    """Events a consumer group applied so far, by type, from a service's ``/metrics`` text.

    Args:
        exposition: The Prometheus text.
        group: The consumer group.

    Returns:
        ``baton_consumer_events_total`` with outcome ``applied`` per event type.
    """
    applied: dict[str, int] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "baton_consumer_events":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels.get("group") == group and labels.get("outcome") == "applied":
                applied[labels["type"]] = applied.get(labels["type"], 0) + int(sample.value)
    return applied


async def _applied(baton: Baton) -> dict[str, int]:
    answer = await baton.client.get(f"{baton.urls['metrics']}/metrics")
    answer.raise_for_status()
    return applied_events(answer.text)


async def applied_settle(baton: Baton, *, quiet_seconds: float = 1.0, wait_seconds: float = 30) -> bool:
    """Waits until metrics applies nothing more, ``lead.scored`` included, which its totals do not show."""
    return await until_still(partial(_applied, baton), quiet_seconds=quiet_seconds, wait_seconds=wait_seconds)


async def metrics_rate(bus: Bus, baton: Baton, *, tag: str, leads: int, wait_seconds: float) -> dict[str, Any]:
    """Saturated: publishes ``leads`` lives (received, qualified, assigned, accepted) onto the three topics, then
    polls metrics' applied-events counter until it took every one of them.

    scoring scores the received leads and handoff routes the qualified ones meanwhile, as they would; metrics
    applies what they publish too, and those events are counted with the rest: what is reported is every event
    metrics applied per second. The run ends once each type of the mix went up by ``leads``.

    Returns:
        ``events_per_second`` (events applied ÷ time from the first publish until the last of the mix was
        applied), ``events`` (all applied in that time), ``published`` (the mix), ``by_type`` (applied, by
        type), ``completed``, ``elapsed_seconds``, ``publish_seconds``.
    """
    records = [
        r for n in range(leads) for r in mix_records(new_id(), nurture_lead(tag, n), rep_id=f"bench-rep-{n % 4}")
    ]
    before = await _applied(baton)
    started = time.perf_counter()
    publish_seconds = await publish_all(bus, records)
    deadline = started + wait_seconds
    while True:
        now = await _applied(baton)
        finished = time.perf_counter()
        gained = {t: count - before.get(t, 0) for t, count in now.items() if count > before.get(t, 0)}
        completed = all(gained.get(t, 0) >= leads for t in MIX)
        if completed or finished > deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    elapsed = finished - started
    events = sum(gained.values())
    return {
        "events_per_second": events / elapsed if events and elapsed > 0 else None,
        "events": events,
        "published": len(records),
        "by_type": {t.removeprefix("baton.").removesuffix(".v1"): n for t, n in sorted(gained.items())},
        "completed": completed,
        "elapsed_seconds": round(elapsed, 2),
        "publish_seconds": round(publish_seconds, 3),
        "observed": "baton_consumer_events_total{group=metrics,outcome=applied} on metrics' /metrics",
    }


def scored_watcher(env: Mapping[str, str]) -> AssignmentWatcher:
    """An observer of ``lead.scored`` on the running system's ``leads.scored``, from its environment."""
    if env.get("BATON_BUS") == "kafka":
        return KafkaAssignments(
            bootstrap=env["BATON_KAFKA_BOOTSTRAP_SERVERS"],
            prefix=env.get("BATON_KAFKA_TOPIC_PREFIX", ""),
            group="bench-scored-observer",
            topic=LEADS_SCORED,
            event_type=SCORED,
        )
    return EmbeddedAssignments(Path(env["BATON_DATA_DIR"]) / "bus.db", topic=LEADS_SCORED, event_type=SCORED)


async def measure_scoring(
    baton: Baton, env: Mapping[str, str], *, tag: str, leads: int, wait_seconds: float
) -> dict[str, Any]:
    """Scored leads per second, saturated (see ``scored_rate``), once metrics is idle."""
    await applied_settle(baton, wait_seconds=wait_seconds)
    async with scored_watcher(env) as watcher, scored_bus(env) as bus:
        return await scored_rate(bus, watcher, tag=tag, leads=leads, wait_seconds=wait_seconds)


async def measure_metrics(
    baton: Baton, env: Mapping[str, str], *, tag: str, leads: int, wait_seconds: float
) -> dict[str, Any]:
    """Events metrics applies per second, saturated (see ``metrics_rate``); every rep is given room first, so
    the leads handoff routes meanwhile are not queued."""
    await make_room(baton)
    await applied_settle(baton, wait_seconds=wait_seconds)
    async with scored_bus(env) as bus:
        return await metrics_rate(bus, baton, tag=tag, leads=leads, wait_seconds=wait_seconds)
