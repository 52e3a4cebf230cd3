"""metrics as a separate process on the real PostgreSQL and Kafka: killed with SIGKILL while it applies a known
stream of events (some delivered twice) and restarted, it ends with exactly the totals the events imply."""

from __future__ import annotations

import signal
import statistics
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.bus import Record
from baton.events import (
    TOPICS,
    AssignmentStatus,
    CloudEvent,
    EventData,
    LeadAssigned,
    LeadQualified,
    LeadReceived,
    LeadRecycled,
    LeadScored,
    LeadStatusChanged,
    RoutingAttributes,
    SlaBreached,
    new_id,
)
from baton_metrics.models import KpiCounter
from tests.conftest import KAFKA_BOOTSTRAP
from tests.handoff_process import (
    KafkaInstallation,
    Replicas,
    ServiceProcess,
    kafka_installation,
    service_replicas,
    within,
)

pytestmark = pytest.mark.integration

LEADS = 300
BASE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ACCEPT_WITHIN = timedelta(minutes=10)
TOUCH_WITHIN = timedelta(minutes=60)
SOURCES = ("webinar", "ads", "referral")
CAMPAIGNS = ("spring", "summer")
TEAMS = ("amer", "emea")
REJECTION_REASONS = ("no budget", "wrong region")
# Small batches: many short transactions, so the kill lands among them.
BATCH_SIZE = "5"
# The consumer group rejoins once the killed member's session has expired, then applies what is left.
CATCH_UP_TIMEOUT_SECONDS = 90
APPLYING_TIMEOUT_SECONDS = 60


class Installation(KafkaInstallation):
    """What the test shares with the metrics process: a fresh database, a topic prefix, a secret, a work folder."""

    def metrics(self) -> AbstractAsyncContextManager[Replicas]:
        """One metrics process on this installation, with small consumer batches; ready when entered."""
        return service_replicas(
            "metrics",
            1,
            workdir=self.workdir,
            database_url=self.database_url,
            topic_prefix=self.topic_prefix,
            secret=self.secret,
            consumer_batch_size=BATCH_SIZE,
        )


@pytest.fixture
async def installation(
    tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]], unique_name: str
) -> AsyncIterator[Installation]:
    database_url = await fresh_database("metrics")
    async with kafka_installation(workdir=tmp_path, database_url=database_url, name=unique_name) as installed:
        yield Installation(**vars(installed))


# The stream: each lead's story, in the order it happened (and is published: a lead's handoff events in order).


def happened(data: EventData, at: datetime, source: str) -> CloudEvent:
    return CloudEvent.wrap(data, source=source, time=at)


def lead_story(n: int) -> list[CloudEvent]:
    """Lead ``n``'s events. Every sixth lead is only scored; the others are qualified, assigned and then
    won, lost and recycled, rejected, breach their accept SLA, or are accepted and contacted."""
    lead_id = new_id()
    source, campaign = SOURCES[n % len(SOURCES)], CAMPAIGNS[n % len(CAMPAIGNS)]
    turn = (n // 6) % 2
    received_at = BASE + n * timedelta(minutes=1)
    story = [
        happened(
            LeadReceived(
                lead_id=lead_id,
                source=source,
                campaign=campaign,
                email=f"lead-{n}@example.com",
                received_at=received_at,
            ),
            received_at,
            "/baton/lead-ingest",
        ),
        happened(
            LeadScored(lead_id=lead_id, score=40 + n % 60, fit_grade="B", engagement=10, breakdown=[], model_version=1),
            received_at + timedelta(minutes=1),
            "/baton/scoring",
        ),
    ]
    kind = n % 6
    if kind == 5:
        return story
    story.append(
        happened(
            LeadQualified(
                lead_id=lead_id,
                score=80,
                fit_grade="A",
                reason="threshold",
                lead=RoutingAttributes(email=f"lead-{n}@example.com", source=source, campaign=campaign),
            ),
            received_at + timedelta(minutes=2),
            "/baton/scoring",
        )
    )
    assigned_at = received_at + timedelta(minutes=3)
    assignment_id = new_id()
    rep_id, team = f"rep-{n % 7}", TEAMS[turn]
    story.append(
        happened(
            LeadAssigned(
                lead_id=lead_id,
                assignment_id=assignment_id,
                rep_id=rep_id,
                team=team,
                source=source,
                campaign=campaign,
                rule="every-lead",
                attempt=1,
                accept_due_at=assigned_at + ACCEPT_WITHIN,
                touch_due_at=assigned_at + TOUCH_WITHIN,
            ),
            assigned_at,
            "/baton/handoff",
        )
    )

    def status(status: AssignmentStatus, after: timedelta, **details: Any) -> CloudEvent:
        change = LeadStatusChanged(
            lead_id=lead_id,
            assignment_id=assignment_id,
            rep_id=rep_id,
            team=team,
            source=source,
            campaign=campaign,
            status=status,
            occurred_at=assigned_at + after,
            **details,
        )
        return happened(change, assigned_at + after, "/baton/handoff")

    if kind == 0:
        story += [
            status("accepted", timedelta(minutes=4)),
            status("contacted", timedelta(minutes=20)),
            status("qualified", timedelta(days=1)),
            status("won", timedelta(days=10), amount=Decimal(f"{1000 + n}.50")),
        ]
    elif kind == 1:
        lost_at = assigned_at + timedelta(days=3)
        story += [
            status("accepted", timedelta(minutes=25)),
            status("contacted", timedelta(minutes=90)),
            status("lost", lost_at - assigned_at, reason="went silent"),
            happened(LeadRecycled(lead_id=lead_id, reason="lost"), lost_at + timedelta(minutes=1), "/baton/handoff"),
        ]
    elif kind == 2:
        story.append(status("rejected", timedelta(minutes=5), reason=REJECTION_REASONS[turn]))
    elif kind == 3:
        due_at = assigned_at + ACCEPT_WITHIN
        breach = SlaBreached(
            lead_id=lead_id,
            assignment_id=assignment_id,
            rep_id=rep_id,
            sla="accept",
            due_at=due_at,
            breached_at=due_at + timedelta(seconds=1),
            action=("reassigned", "escalated")[turn],
        )
        story.append(happened(breach, due_at + timedelta(seconds=1), "/baton/handoff"))
    else:
        story += [status("accepted", timedelta(minutes=8)), status("contacted", timedelta(minutes=61))]
    return story


def with_duplicates(events: Sequence[CloudEvent]) -> list[CloudEvent]:
    """The stream as delivered: every event, every ninth twice in a row, and every eleventh again at the end."""
    delivered: list[CloudEvent] = []
    for position, event in enumerate(events):
        delivered.append(event)
        if position % 9 == 0:
            delivered.append(event)
    return delivered + list(events[::11])


# What the stream implies, worked out from the events themselves as docs/metrics.md defines each figure.


@dataclass
class Expected:
    counts: Counter[str] = field(default_factory=Counter)
    won_amount: Decimal = Decimal(0)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    speed_to_lead: list[timedelta] = field(default_factory=list)
    speed_to_lead_by_rep: Counter[str] = field(default_factory=Counter)
    time_to_accept: list[timedelta] = field(default_factory=list)
    assigned_by_rep: Counter[str] = field(default_factory=Counter)
    pipeline: Counter[str] = field(default_factory=Counter)

    @property
    def counted(self) -> int:
        """Every count added up, rejections by reason included: what the counter rows hold in all."""
        return sum(self.counts.values()) + sum(self.rejected_by_reason.values())


def expected_from(events: Sequence[CloudEvent]) -> Expected:
    """The figures the events imply, each event once.

    In these stories an assignment is accepted and contacted at most once each, before anything closes
    its clocks, and an accept-SLA breach comes to an assignment nobody accepted.
    """
    expected = Expected()
    clocks: dict[str, tuple[datetime, LeadAssigned]] = {}
    seen: dict[str, set[str]] = {}
    for event in events:
        data = event.payload()
        seen.setdefault(event.type, set()).add(data.lead_id)
        if isinstance(data, LeadReceived):
            expected.counts["received"] += 1
        elif isinstance(data, LeadQualified):
            expected.counts["mql"] += 1
        elif isinstance(data, LeadAssigned):
            expected.counts["assigned"] += 1
            expected.assigned_by_rep[data.rep_id] += 1
            clocks[data.assignment_id] = (event.time, data)
        elif isinstance(data, LeadStatusChanged):
            expected.counts[data.status] += 1
            assigned_at, assignment = clocks[data.assignment_id]
            if data.status == "won" and data.amount is not None:
                expected.won_amount += data.amount
            elif data.status == "rejected":
                expected.rejected_by_reason[data.reason or ""] += 1
            elif data.status == "accepted":
                met = data.occurred_at <= assignment.accept_due_at
                expected.counts["accept_sla_met" if met else "accept_sla_breached"] += 1
                expected.time_to_accept.append(data.occurred_at - assigned_at)
            elif data.status == "contacted":
                met = data.occurred_at <= assignment.touch_due_at
                expected.counts["touch_sla_met" if met else "touch_sla_breached"] += 1
                expected.speed_to_lead.append(data.occurred_at - assigned_at)
                expected.speed_to_lead_by_rep[data.rep_id] += 1
        elif isinstance(data, SlaBreached):
            expected.counts[f"{data.sla}_sla_breached"] += 1
            expected.counts[data.action] += 1
        elif isinstance(data, LeadRecycled):
            expected.counts["recycled"] += 1
    received, scored = seen[LeadReceived.event_type], seen[LeadScored.event_type]
    qualified, assigned = seen[LeadQualified.event_type], seen[LeadAssigned.event_type]
    # Each lead is scored once, before it is qualified: every qualification has a score to time it from.
    expected.pipeline["received_to_scored"] = len(received & scored)
    expected.pipeline["scored_to_qualified"] = expected.counts["mql"]
    expected.pipeline["qualified_to_assigned"] = len(qualified & assigned)
    return expected


# Reading metrics


def counted(totals: dict[str, Any]) -> int:
    """Every count of a report's totals added up (not the won amount, not rejections by reason)."""
    return sum(value for value in totals.values() if isinstance(value, int))


async def read(metrics: Replicas, path: str) -> Any:
    response = await metrics.client.get(f"{metrics.processes[0].url}{path}", headers=metrics.token("metrics:read"))
    assert response.status_code == 200, response.text
    return response.json()


async def counter_rows_total(engine: AsyncEngine) -> int:
    """Every count the read model's counter rows hold, added up."""
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.coalesce(func.sum(KpiCounter.count), 0))) or 0)


class GroupLag:
    """How many records of Baton's topics a consumer group has not committed: each partition's end minus its offset."""

    def __init__(self, topic_prefix: str, group: str) -> None:
        self.group = topic_prefix + group
        self.topics = [topic_prefix + topic for topic in TOPICS]
        self.partitions: list[TopicPartition] = []
        self._admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
        self._ends = AIOKafkaConsumer(bootstrap_servers=KAFKA_BOOTSTRAP, enable_auto_commit=False)

    async def __aenter__(self) -> GroupLag:
        await self._admin.start()
        await self._ends.start()
        described = await self._admin.describe_topics(self.topics)
        self.partitions = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
        assert {tp.topic for tp in self.partitions} == set(self.topics), described
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._ends.stop()
        await self._admin.close()

    async def unapplied(self) -> int:
        committed = await self._admin.list_consumer_group_offsets(self.group, partitions=self.partitions)
        ends = await self._ends.end_offsets(self.partitions)
        # The topics are new: a partition the group never committed on starts at offset 0.
        return sum(
            ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
            for tp in self.partitions
        )


async def wait_until_applying(metrics: Replicas, victim: ServiceProcess, expected: Expected) -> int:
    """Waits until metrics has counted a quarter of the stream and not all of it; returns what it had counted."""
    total = sum(expected.counts.values())
    async with within(APPLYING_TIMEOUT_SECONDS, what="metrics applying the stream", replicas=metrics.processes):
        while True:
            so_far = counted((await read(metrics, "/v1/kpis"))["totals"])
            assert so_far < total, "metrics applied the whole stream before it could be killed"
            if so_far >= total // 4:
                return so_far
            victim.check_alive("metrics applying the stream")


async def wait_until_caught_up(metrics: Replicas, lag: GroupLag) -> None:
    """Waits until the metrics consumer group has committed every record on its topics."""
    what = "metrics caught up with its topics"
    async with within(CATCH_UP_TIMEOUT_SECONDS, what=what, replicas=metrics.processes):
        while await lag.unapplied():
            metrics.processes[0].check_alive(what)


async def test_metrics_killed_mid_stream_and_restarted_counts_every_event_exactly_once(
    installation: Installation,
) -> None:
    stories = [lead_story(n) for n in range(LEADS)]
    events = [event for story in stories for event in story]
    delivered = with_duplicates(events)
    expected = expected_from(events)
    assert len(delivered) - len(events) > 300  # enough redeliveries that counting any twice shows
    await installation.bus.publish([Record.from_event(event) for event in delivered])

    async with (
        installation.metrics() as metrics,
        GroupLag(installation.topic_prefix, metrics.group) as lag,
    ):
        [victim] = metrics.processes
        seen_before_kill = await wait_until_applying(metrics, victim, expected)
        exit_code = await victim.kill()
        counted_at_kill = await counter_rows_total(installation.engine)
        unapplied_at_kill = await lag.unapplied()

        await metrics.start(victim)
        await wait_until_caught_up(metrics, lag)
        report = await read(metrics, "/v1/kpis")
        by_rep = await read(metrics, "/v1/kpis?group_by=rep")
        funnel = await read(metrics, "/v1/funnel")
        pipeline = await read(metrics, "/v1/pipeline")
        # One lead of each kind of story.
        journeys = [await read(metrics, f"/v1/leads/{story[0].subject}/journey") for story in stories[:6]]

    assert exit_code == -signal.SIGKILL
    # Killed mid-stream: some of the stream counted, some not, and records left for the restarted process.
    assert 0 < seen_before_kill <= counted_at_kill < expected.counted
    assert unapplied_at_kill > 0

    totals = report["totals"]
    kpis = [kpi for kpi, value in totals.items() if isinstance(value, int)]
    assert {kpi: totals[kpi] for kpi in kpis} == {kpi: expected.counts[kpi] for kpi in kpis}
    assert set(expected.counts) <= set(kpis)
    assert Decimal(str(totals["won_amount"])) == expected.won_amount
    assert totals["rejected_by_reason"] == dict(expected.rejected_by_reason)
    assert await counter_rows_total(installation.engine) == expected.counted

    assert report["time_to_accept"]["count"] == len(expected.time_to_accept)
    assert report["speed_to_lead"]["count"] == len(expected.speed_to_lead)
    median_minutes = statistics.median_low(expected.speed_to_lead).total_seconds() / 60
    assert report["speed_to_lead"]["p50_minutes"] == pytest.approx(median_minutes, rel=0.011)
    groups = by_rep["groups"]
    assert {g["key"]: g["speed_to_lead"]["count"] for g in groups if g["speed_to_lead"]["count"]} == dict(
        expected.speed_to_lead_by_rep
    )
    assert {g["key"]: g["totals"]["assigned"] for g in groups if g["totals"]["assigned"]} == dict(
        expected.assigned_by_rep
    )

    stages = ["received", "mql", "assigned", "accepted", "contacted", "qualified", "won"]
    assert [(stage["stage"], stage["count"]) for stage in funnel["stages"]] == [
        (stage, expected.counts[stage]) for stage in stages
    ]
    shares = [stage["from_previous"] for stage in funnel["stages"]]
    assert shares[0] is None
    assert shares[1:] == [
        pytest.approx(expected.counts[later] / expected.counts[earlier], abs=1e-4)
        for earlier, later in zip(stages, stages[1:], strict=False)
    ]
    assert (funnel["rejected"], funnel["recycled"], funnel["lost"]) == (
        expected.counts["rejected"],
        expected.counts["recycled"],
        expected.counts["lost"],
    )
    assert funnel["rejected_by_reason"] == dict(expected.rejected_by_reason)
    assert {step["step"]: step["count"] for step in pipeline["steps"]} == dict(expected.pipeline)

    # Every event of each of these leads once, in the order it happened.
    for n, (story, journey) in enumerate(zip(stories, journeys, strict=False)):
        steps = [(step["event_type"], datetime.fromisoformat(step["occurred_at"])) for step in journey["steps"]]
        assert steps == [(event.type, event.time) for event in story], f"journey of lead {n}"
