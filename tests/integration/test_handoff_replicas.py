"""handoff as separate processes on the real PostgreSQL and Kafka: two replicas in one consumer group,
one of them killed with SIGKILL mid-load or while it acts on SLA breaches, and a rep coming back from
out of office."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.bus import Record
from baton.events import (
    LEADS_HANDOFF,
    CloudEvent,
    LeadAssigned,
    LeadQualified,
    RoutingAttributes,
    SlaBreached,
    new_id,
)
from baton_handoff.domain import LEAD_HOLDING_STATUSES, OPEN_STATUSES
from baton_handoff.models import Assignment, RepWorkload
from baton_handoff.settings import HandoffSettings
from tests.conftest import KAFKA_BOOTSTRAP
from tests.handoff_process import KafkaInstallation, Replicas, TopicReader, handoff_replicas, kafka_installation, within
from tests.unit.test_handoff_api import written_events

pytestmark = pytest.mark.integration

# From the first MQL published to the last one assigned, Kafka's rebalances included, with room to spare.
ROUTING_TIMEOUT_SECONDS = 45
# Big enough that a rep with this capacity never fills up here.
ROOMY = 10_000
# Three two-second accept clocks run out one after another, a replica restarts meanwhile, with room to spare.
SLA_TIMEOUT_SECONDS = 45


class Installation(KafkaInstallation):
    """What the replicas of one test share: a fresh database, a topic prefix, a signing secret, a work folder."""

    @property
    def settings(self) -> HandoffSettings:
        """The replicas' settings, for reading what they wrote to their outbox and to Kafka."""
        return HandoffSettings(
            data_dir=self.workdir,
            database_url=self.database_url,
            bus="kafka",
            kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
            kafka_topic_prefix=self.topic_prefix,
            kafka_replication_factor=1,
        )

    def replicas(self, count: int, **settings: str) -> AbstractAsyncContextManager[Replicas]:
        """``count`` handoff processes on this installation, ready when entered, stopped when left."""
        return handoff_replicas(
            count,
            workdir=self.workdir,
            database_url=self.database_url,
            topic_prefix=self.topic_prefix,
            secret=self.secret,
            **settings,
        )

    def handoff_topic(self) -> TopicReader:
        """A fresh reader of this installation's leads.handoff, from its beginning."""
        return TopicReader(self.topic_prefix + LEADS_HANDOFF)

    async def publish_mqls(self, count: int) -> list[str]:
        """Publishes ``count`` lead.qualified events onto leads.scored as scoring does; returns their lead ids."""
        events = [CloudEvent.wrap(mql(n), source="/baton/scoring") for n in range(count)]
        await self.bus.publish([Record.from_event(event) for event in events])
        return [event.subject for event in events]


@pytest.fixture
async def installation(
    tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]], unique_name: str
) -> AsyncIterator[Installation]:
    database_url = await fresh_database("handoff")
    async with kafka_installation(workdir=tmp_path, database_url=database_url, name=unique_name) as installed:
        yield Installation(**vars(installed))


def mql(n: int) -> LeadQualified:
    return LeadQualified(
        lead_id=new_id(),
        score=80,
        fit_grade="A",
        reason="threshold",
        lead=RoutingAttributes(email=f"mql-{n}@example.com", country="DE", source="webinar", company_size=50),
    )


async def add_reps(replicas: Replicas, reps: Iterable[tuple[str, int]]) -> None:
    """Creates available reps (rep_id, capacity) through the first replica's API."""
    await create(
        replicas,
        "reps",
        [{"rep_id": rep_id, "name": rep_id.title(), "capacity": capacity} for rep_id, capacity in reps],
    )


async def create(replicas: Replicas, collection: str, bodies: Iterable[dict[str, Any]]) -> None:
    """POSTs each body to /v1/{collection} of the first replica as an admin; each must be created."""
    for body in bodies:
        created = await replicas.client.post(
            f"{replicas.processes[0].url}/v1/{collection}", json=body, headers=replicas.token("admin")
        )
        assert created.status_code == 201, created.text


async def routed_leads(engine: AsyncEngine) -> int:
    """How many leads hold an assignment."""
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count(func.distinct(Assignment.lead_id)))) or 0)


async def wait_until_routed(
    installation: Installation, replicas: Replicas, topic: TopicReader, count: int, *, announced: bool = False
) -> None:
    """Waits until ``count`` leads hold an assignment (and, if ``announced``, leads.handoff carries their
    lead.assigned), checking again whenever leads.handoff moves."""
    what = f"{count} leads routed{' and announced' if announced else ''}"
    async with within(ROUTING_TIMEOUT_SECONDS, what=what, replicas=replicas.processes):
        while await routed_leads(installation.engine) < count or (
            announced and len(assigned_leads(topic.events)) < count
        ):
            await topic.more()


async def wait_until_counted(replicas: Replicas, count: int) -> list[float]:
    """Waits until the replicas' assignment counters add up to ``count``; returns each replica's count."""
    async with within(ROUTING_TIMEOUT_SECONDS, what=f"{count} assignments counted", replicas=replicas.processes):
        while True:
            # Each replica counts a batch just after its commit: the last may trail the rows by a moment.
            counted = [await replicas.counted_assignments(replica) for replica in replicas.processes]
            if sum(counted) >= count:
                return counted


def assigned_leads(events: Sequence[CloudEvent]) -> set[str]:
    return {event.subject for event in events if event.type == LeadAssigned.event_type}


async def stored_assignments(engine: AsyncEngine) -> list[tuple[str, str, str | None, str]]:
    """Every assignment as (lead_id, assignment id, rep_id, status), oldest first."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Assignment.lead_id, Assignment.id, Assignment.rep_id, Assignment.status).order_by(Assignment.seq)
        )
        return [(lead_id, id_, rep_id, status) for lead_id, id_, rep_id, status in rows]


async def kept_workloads(engine: AsyncEngine) -> dict[str, int]:
    """Each rep's open-assignment count as routing keeps it."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(RepWorkload.rep_id, RepWorkload.open_assignments))
        return {rep_id: n for rep_id, n in rows if n}


def spread(counts: Counter[str | None], reps: Iterable[str]) -> int:
    """The difference between the most and the fewest leads any of these reps got."""
    got = [counts[rep] for rep in reps]
    return max(got) - min(got)


async def test_500_mqls_routed_by_two_replicas_at_once_are_assigned_once_each_within_capacity_and_evenly(
    installation: Installation,
) -> None:
    capacities = {"rep-a": 40, "rep-b": 70, "rep-c": ROOMY, "rep-d": ROOMY, "rep-e": ROOMY}
    async with installation.replicas(2) as replicas, installation.handoff_topic() as topic:
        await add_reps(replicas, capacities.items())
        await replicas.wait_until_all_in_group()

        leads = await installation.publish_mqls(500)
        await wait_until_routed(installation, replicas, topic, len(leads))
        counted = await wait_until_counted(replicas, len(leads))

    assignments = await stored_assignments(installation.engine)
    per_lead = Counter(lead_id for lead_id, *_ in assignments)
    per_rep = Counter(rep_id for _, _, rep_id, _ in assignments)
    assert set(per_lead) == set(leads)
    assert set(per_lead.values()) == {1}
    assert {status for *_, status in assignments} == {"assigned"}
    # The small reps filled up and went no further; the others shared the rest evenly.
    assert per_rep["rep-a"] == capacities["rep-a"]
    assert per_rep["rep-b"] == capacities["rep-b"]
    assert spread(per_rep, ["rep-c", "rep-d", "rep-e"]) <= 1
    assert await kept_workloads(installation.engine) == dict(per_rep)
    # Both replicas routed some of the leads, and together each lead once.
    assert all(n > 0 for n in counted), counted
    assert sum(counted) == len(leads)
    announced = await written_events(installation.settings, LeadAssigned.event_type)
    assert sorted(event.subject for event in announced) == sorted(leads)


async def test_a_replica_killed_mid_batch_and_restarted_leaves_every_mql_assigned_and_announced_once(
    installation: Installation,
) -> None:
    reps = ["rep-a", "rep-b", "rep-c"]
    # Small batches: many short transactions, so the kill lands inside one.
    async with (
        installation.replicas(2, consumer_batch_size="5") as replicas,
        installation.handoff_topic() as topic,
    ):
        await add_reps(replicas, [(rep, ROOMY) for rep in reps])
        await replicas.wait_until_all_in_group()
        victim = replicas.processes[0]

        leads = await installation.publish_mqls(300)
        async with within(ROUTING_TIMEOUT_SECONDS, what="the victim routing", replicas=replicas.processes):
            while True:
                routed_before_kill = await routed_leads(installation.engine)
                assert routed_before_kill < len(leads), "every lead was routed before a replica could be killed"
                if routed_before_kill and await replicas.counted_assignments(victim):
                    break
                await topic.more()
        exit_code = await victim.kill()
        await replicas.start(victim)
        await wait_until_routed(installation, replicas, topic, len(leads), announced=True)

    assert exit_code == -signal.SIGKILL
    assert 0 < routed_before_kill < len(leads)
    assignments = await stored_assignments(installation.engine)
    assert sorted(lead_id for lead_id, *_ in assignments) == sorted(leads)
    assert {status for *_, status in assignments} == {"assigned"}
    per_rep = Counter(rep_id for _, _, rep_id, _ in assignments)
    assert spread(per_rep, reps) <= 1
    assert await kept_workloads(installation.engine) == dict(per_rep)
    # The outbox and leads.handoff together, each event once by id: one lead.assigned per lead,
    # naming the assignment the database kept.
    announced = await written_events(installation.settings, LeadAssigned.event_type)
    assert Counter(event.subject for event in announced) == Counter(leads)
    kept = {lead_id: assignment_id for lead_id, assignment_id, *_ in assignments}
    assert {event.subject: event.data["assignment_id"] for event in announced} == kept
    # Read from the topic itself, duplicates included: a lead never names two assignments.
    on_topic: dict[str, set[str]] = {}
    for event in topic.events:
        if event.type == LeadAssigned.event_type:
            on_topic.setdefault(event.subject, set()).add(event.data["assignment_id"])
    assert on_topic == {lead_id: {assignment_id} for lead_id, assignment_id in kept.items()}


async def test_a_rep_back_from_out_of_office_rejoins_the_rotation_without_a_flood_of_leads(
    installation: Installation,
) -> None:
    reps = ["rep-a", "rep-b", "rep-c"]
    async with installation.replicas(2) as replicas, installation.handoff_topic() as topic:
        await add_reps(replicas, [(rep, ROOMY) for rep in reps])
        rep_b = f"{replicas.processes[1].url}/v1/reps/rep-b"
        away = await replicas.client.patch(rep_b, json={"status": "ooo"}, headers=replicas.token("admin"))
        assert away.status_code == 200, away.text

        while_away = await installation.publish_mqls(60)
        await wait_until_routed(installation, replicas, topic, 60)
        back = await replicas.client.patch(rep_b, json={"status": "available"}, headers=replicas.token("admin"))
        assert back.status_code == 200, back.text
        after_return = await installation.publish_mqls(30)
        await wait_until_routed(installation, replicas, topic, 90)

    assignments = await stored_assignments(installation.engine)
    rep_of = {lead_id: rep_id for lead_id, _, rep_id, _ in assignments}
    assert len(assignments) == len(rep_of) == 90
    assert Counter(rep_of[lead] for lead in while_away) == {"rep-a": 30, "rep-c": 30}
    # A third each: rep-b takes its turn in the rotation, not the 30 it missed.
    assert Counter(rep_of[lead] for lead in after_return) == {"rep-a": 10, "rep-b": 10, "rep-c": 10}


def sla_rule() -> dict[str, Any]:
    """A rule for every lead: emea round robin, two seconds to accept on the wall clock, three attempts,
    then the emea-leads queue."""
    return {
        "name": "every-lead",
        "priority": 1,
        "conditions": [],
        "team": "emea",
        "method": "round_robin",
        "sla": {"accept_within": "PT2S", "touch_within": "PT1H", "clock": "wall_clock"},
        "max_attempts": 3,
        "fallback_team": "emea-leads",
    }


async def assignments_by_status(engine: AsyncEngine) -> Counter[str]:
    """How many assignments stand in each status."""
    async with engine.connect() as conn:
        rows = await conn.execute(select(Assignment.status, func.count()).group_by(Assignment.status))
        return Counter({status: int(n) for status, n in rows})


async def stored_attempts(engine: AsyncEngine) -> dict[str, list[tuple[int, str, str | None, str]]]:
    """Each lead's assignments as (attempt, status, rep_id, assignment id), in the order they were made."""
    by_lead: dict[str, list[tuple[int, str, str | None, str]]] = {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                Assignment.lead_id, Assignment.attempt, Assignment.status, Assignment.rep_id, Assignment.id
            ).order_by(Assignment.seq)
        )
        for lead_id, attempt, status, rep_id, id_ in rows:
            by_lead.setdefault(lead_id, []).append((attempt, status, rep_id, id_))
    return by_lead


def breach_events(events: Iterable[CloudEvent]) -> dict[str, CloudEvent]:
    """The sla.breached events among ``events``, once each by event id."""
    return {event.id: event for event in events if event.type == SlaBreached.event_type}


async def test_a_replica_killed_while_acting_on_sla_breaches_and_restarted_fires_each_breach_exactly_once(
    installation: Installation,
) -> None:
    reps = [{"rep_id": f"rep-{name}", "name": name.title(), "team": "emea", "capacity": ROOMY} for name in "abcd"]
    # The escalated leads stay in emea-leads' queue: its only rep is away, so nothing drains it.
    queue_lead = {"rep_id": "rep-lea", "name": "Lea", "team": "emea-leads", "status": "away"}
    # Small SLA batches: a replica acts on the breaches in many short transactions, so the kill lands among them.
    async with (
        installation.replicas(2, sla_batch_size="5") as replicas,
        installation.handoff_topic() as topic,
    ):
        await create(replicas, "reps", [*reps, queue_lead])
        await create(replicas, "routing-rules", [sla_rule()])
        await replicas.wait_until_all_in_group()

        leads = await installation.publish_mqls(60)
        async with within(SLA_TIMEOUT_SECONDS, what="a replica acting on breaches", replicas=replicas.processes):
            while True:
                before_kill = await assignments_by_status(installation.engine)
                assert before_kill["queued"] < len(leads), "every lead was escalated before a replica could be killed"
                acted = [await replicas.counted_breaches(replica) for replica in replicas.processes]
                if before_kill["reassigned"] and any(acted):
                    break
                await topic.more()
        victim = next(replica for replica, breaches in zip(replicas.processes, acted, strict=True) if breaches)
        exit_code = await victim.kill()
        await replicas.start(victim)

        expected_breaches = 3 * len(leads)
        what = f"{len(leads)} leads escalated and {expected_breaches} breaches announced"
        async with within(SLA_TIMEOUT_SECONDS, what=what, replicas=replicas.processes):
            while (await assignments_by_status(installation.engine))["queued"] < len(leads) or len(
                breach_events(topic.events)
            ) < expected_breaches:
                await topic.more()

    assert exit_code == -signal.SIGKILL
    assert before_kill["reassigned"] > 0
    by_lead = await stored_attempts(installation.engine)
    assert set(by_lead) == set(leads)
    # Every lead went through three different reps, each attempt once, and waits in the queue after the third breach.
    assert Counter(tuple((attempt, status) for attempt, status, *_ in its) for its in by_lead.values()) == {
        ((1, "reassigned"), (2, "reassigned"), (3, "reassigned"), (4, "queued")): len(leads)
    }
    assert [lead for lead, its in by_lead.items() if len({rep for _, _, rep, _ in its[:3]} - {None}) != 3] == []
    assert {(rep, status) for its in by_lead.values() for _, status, rep, _ in its[3:]} == {(None, "queued")}

    attempt_of = {id_: attempt for its in by_lead.values() for attempt, status, _, id_ in its if status == "reassigned"}
    # Read from the topic itself, redeliveries folded by event id: one breach per assignment that breached.
    breach_ids: dict[str, set[str]] = {}
    for event in breach_events(topic.events).values():
        breach_ids.setdefault(event.data["assignment_id"], set()).add(event.id)
    assert {assignment_id: len(ids) for assignment_id, ids in breach_ids.items()} == dict.fromkeys(attempt_of, 1)
    # The outbox and leads.handoff together say the same, and each breach tells what became of the lead.
    written = await written_events(installation.settings, SlaBreached.event_type)
    published = [SlaBreached.model_validate(event.data) for event in written]
    assert Counter(breach.assignment_id for breach in published) == dict.fromkeys(attempt_of, 1)
    assert {(attempt_of[b.assignment_id], b.sla, b.action) for b in published} == {
        (1, "accept", "reassigned"),
        (2, "accept", "reassigned"),
        (3, "accept", "escalated"),
    }
    # Each of the reps' assignments was announced once.
    announced = await written_events(installation.settings, LeadAssigned.event_type)
    assert Counter(event.data["assignment_id"] for event in announced) == dict.fromkeys(attempt_of, 1)

    # One lead-holding assignment per lead, and the reps' open counts as routing keeps them equal the rows.
    holding = [
        (lead, rep, status)
        for lead, its in by_lead.items()
        for _, status, rep, _ in its
        if status in LEAD_HOLDING_STATUSES
    ]
    assert Counter(lead for lead, *_ in holding) == Counter(leads)
    assert await kept_workloads(installation.engine) == dict(
        Counter(rep for _, rep, status in holding if status in OPEN_STATUSES)
    )
