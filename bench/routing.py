"""handoff alone: MQLs published straight onto ``leads.scored``, timed until their ``lead.assigned`` is seen.

Intake and scoring take no part, so the figures are routing's own: how many leads handoff routes per
second with a backlog in front of it, and how long one MQL takes from ``lead.qualified`` to
``lead.assigned`` at a fixed, lower rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from baton.bus import Bus, Record
from baton.bus.embedded import EmbeddedLog
from baton.bus.kafka import KafkaBus
from baton.events import CloudEvent, LeadQualified, RoutingAttributes, new_id
from bench.pipeline import REP_CAPACITY, AssignmentWatcher, Baton, hand_raiser
from bench.report import percentile

SCORING_SOURCE = "/baton/scoring"
BACKLOG_SAMPLE_SECONDS = 0.25
PUBLISH_CHUNK = 100  # MQLs per publish while saturating: one fsynced commit, or one acks=all round trip


def qualified_record(lead_id: str, lead: Mapping[str, Any]) -> Record:
    """A hand-raiser's ``lead.qualified`` as scoring would publish it, ready for ``leads.scored``.

    Args:
        lead_id: The lead.
        lead: A lead as posted to intake (``hand_raiser``); only its routing attributes are carried.

    Returns:
        The record.
    """
    attributes = RoutingAttributes.model_validate({k: lead[k] for k in RoutingAttributes.model_fields if k in lead})
    qualified = LeadQualified(lead_id=lead_id, score=90, fit_grade="A", reason="hand-raiser", lead=attributes)
    return Record.from_event(CloudEvent.wrap(qualified, source=SCORING_SOURCE))


def qualified_records(tag: str, count: int) -> list[tuple[str, Record]]:
    """``count`` MQLs with fresh lead ids, built ahead so that building them costs the timed phases nothing."""
    made = []
    for n in range(count):
        lead_id = new_id()
        made.append((lead_id, qualified_record(lead_id, hand_raiser(tag, n))))
    return made


@asynccontextmanager
async def scored_bus(env: Mapping[str, str]) -> AsyncIterator[Bus]:
    """The running system's own bus, from its environment: its embedded log file, or its Kafka topics."""
    bus: Bus
    if env.get("BATON_BUS") == "kafka":
        bus = KafkaBus(
            bootstrap_servers=env["BATON_KAFKA_BOOTSTRAP_SERVERS"],
            prefix=env.get("BATON_KAFKA_TOPIC_PREFIX", ""),
            replication_factor=int(env.get("BATON_KAFKA_REPLICATION_FACTOR", "1")),
            client_id="baton-bench",
        )
    else:
        bus = EmbeddedLog(Path(env["BATON_DATA_DIR"]) / "bus.db")
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()


async def make_room(baton: Baton) -> list[str]:
    """Raises every rep's capacity to the most a rep may take and makes them available, so no MQL is queued.

    Returns:
        The reps' ids.
    """
    reps: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        answer = await baton.client.get(f"{baton.urls['handoff']}/v1/reps", params=params, headers=baton.headers)
        answer.raise_for_status()
        page = answer.json()
        reps += [rep["rep_id"] for rep in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    for rep_id in reps:
        answer = await baton.client.patch(
            f"{baton.urls['handoff']}/v1/reps/{rep_id}",
            json={"capacity": REP_CAPACITY, "status": "available"},
            headers=baton.headers,
        )
        answer.raise_for_status()
    return reps


async def publish_all(bus: Bus, records: Sequence[Record]) -> float:
    """Publishes ``records`` as fast as the bus takes them, ``PUBLISH_CHUNK`` at a time; the seconds it took."""
    started = time.perf_counter()
    for first in range(0, len(records), PUBLISH_CHUNK):
        await bus.publish(records[first : first + PUBLISH_CHUNK])
    return time.perf_counter() - started


async def saturated_rate(
    bus: Bus, watcher: AssignmentWatcher, made: Sequence[tuple[str, Record]], *, seen_as: str, wait_seconds: float
) -> dict[str, Any]:
    """Publishes ``made`` (lead id, record) as fast as the bus takes them, then waits until the watcher saw every lead.

    Returns:
        ``leads_per_second`` (leads ÷ time from the first publish until the last lead was seen; when some never
        were, those seen ÷ time until the last of them), ``leads``, ``seen_as`` (how many were seen),
        ``missing``, ``completed``, ``elapsed_seconds``, ``publish_seconds`` (how long publishing took).
    """
    ids = [lead_id for lead_id, _ in made]
    records = [record for _, record in made]
    started = time.perf_counter()
    publish_seconds = await publish_all(bus, records)
    completed = await watcher.wait_for(ids, wait_seconds)
    seen = [watcher.seen[lead_id].at for lead_id in ids if lead_id in watcher.seen]
    elapsed = (max(seen) if seen else time.perf_counter()) - started
    return {
        "leads_per_second": len(seen) / elapsed if seen and elapsed > 0 else None,
        "leads": len(made),
        seen_as: len(seen),
        "missing": len(made) - len(seen),
        "completed": completed,
        "elapsed_seconds": round(elapsed, 2),
        "publish_seconds": round(publish_seconds, 3),
    }


async def routed_rate(
    bus: Bus, watcher: AssignmentWatcher, *, tag: str, leads: int, wait_seconds: float
) -> dict[str, Any]:
    """Saturated: publishes ``leads`` MQLs as fast as the bus takes them, then waits for every assignment.

    Returns:
        As ``saturated_rate`` gives it, with ``assigned`` counting the leads seen assigned.
    """
    made = qualified_records(tag, leads)
    return await saturated_rate(bus, watcher, made, seen_as="assigned", wait_seconds=wait_seconds)


async def routing_latency(
    bus: Bus, watcher: AssignmentWatcher, *, tag: str, rate: float, seconds: float, wait_seconds: float
) -> dict[str, Any]:
    """Open loop: publishes MQLs on a fixed schedule and times each from its scheduled publish to its assignment.

    Each MQL's clock starts at its scheduled time, so a slow publish delays no later one and none of
    the waiting is left out: the MQLs that fell due during a publish go out together in the next.

    Returns:
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``, ``measured``, ``missing``, ``offered_rate``,
        ``seconds``, ``max_backlog`` (published but not yet seen assigned), ``behind_schedule_ms``
        (how late the generator itself published).
    """
    made = qualified_records(tag, max(int(rate * seconds), 1))
    due: dict[str, float] = {}
    lateness = 0.0
    max_backlog = 0
    sent = 0
    started = time.perf_counter()
    next_sample = started
    while sent < len(made):
        now = time.perf_counter()
        fallen_due = min(len(made), int((now - started) * rate) + 1)
        if fallen_due <= sent:
            await asyncio.sleep(started + sent / rate - now)
            continue
        lateness = max(lateness, now - (started + sent / rate))
        batch = made[sent:fallen_due]
        for offset, (lead_id, _) in enumerate(batch):
            due[lead_id] = started + (sent + offset) / rate
        await bus.publish([record for _, record in batch])
        sent = fallen_due
        if now >= next_sample:  # a few times a second: counting is O(MQLs sent) and must not slow the schedule
            max_backlog = max(max_backlog, sum(1 for lead_id in due if lead_id not in watcher.seen))
            next_sample = now + BACKLOG_SAMPLE_SECONDS
    await watcher.wait_for(list(due), wait_seconds)
    latencies = [(watcher.seen[i].at - t) * 1000 for i, t in due.items() if i in watcher.seen]
    return {
        "offered_rate": round(rate, 1),
        "seconds": seconds,
        "measured": len(latencies),
        "missing": len(due) - len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=None),
        "max_backlog": max_backlog,
        "behind_schedule_ms": round(lateness * 1000, 1),
    }


async def measure_routing(
    baton: Baton,
    watcher: AssignmentWatcher,
    env: Mapping[str, str],
    *,
    tag: str,
    leads: int,
    latency_seconds: float,
    wait_seconds: float,
    share: float = 0.5,
) -> dict[str, Any]:
    """Routed leads per second, saturated, then ``lead.qualified`` → ``lead.assigned`` at ``share`` of that rate.

    Args:
        baton: The system's API, to give its reps room.
        watcher: Sees ``lead.assigned`` on ``leads.handoff``; must be running.
        env: The system's environment, naming its bus.
        tag: Makes e-mails unique.
        leads: MQLs for the saturated phase.
        latency_seconds: How long the fixed rate is offered.
        wait_seconds: How long each phase waits for its last assignments.
        share: The fixed rate, as a share of the saturated one.

    Returns:
        ``routed`` (as ``routed_rate`` gives it, plus ``reps``: how many reps could take the MQLs) and
        ``routing_latency`` (as ``routing_latency`` gives it; absent when the saturated phase did not finish).
    """
    reps = await make_room(baton)
    measured: dict[str, Any] = {}
    async with scored_bus(env) as bus:
        measured["routed"] = {
            **await routed_rate(bus, watcher, tag=tag + "r", leads=leads, wait_seconds=wait_seconds),
            "reps": len(reps),
        }
        rate = measured["routed"]["leads_per_second"]
        if rate and measured["routed"]["completed"]:
            measured["routing_latency"] = await routing_latency(
                bus, watcher, tag=tag + "q", rate=rate * share, seconds=latency_seconds, wait_seconds=wait_seconds
            )
    return measured
