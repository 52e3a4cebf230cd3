"""Routing on the real PostgreSQL with several sessions at once, as replicas of handoff would route."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.consumer import Incoming
from baton.db import create_engine, create_sessionmaker
from baton.events import LeadAssigned, LeadQualified, new_id
from baton_handoff.service import drain_queue
from baton_handoff.settings import HandoffSettings
from tests.unit.test_handoff_api import (
    ANA,
    LONG_SLA,
    ROUTED_AT,
    Handoff,
    open_counts,
    qualified,
    running_handoff,
    written_events,
)

pytestmark = pytest.mark.integration

REPLICAS = 3
LEADS = 500
BATCH = 25


@pytest.fixture
async def settings(tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path, database_url=await fresh_database("handoff"), **LONG_SLA)


def reps(count: int, **fields: object) -> list[dict[str, object]]:
    return [{**ANA, "rep_id": f"rep-{n:02d}", "name": f"Rep {n}", "territories": [], **fields} for n in range(count)]


@asynccontextmanager
async def replica_sessions(handoff: Handoff) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    """Session factories on engines of their own, one per replica, set up as the service's own sessions are."""
    engines = [create_engine(handoff.runtime.settings.database_url_for("baton_handoff")) for _ in range(REPLICAS)]
    try:
        yield [create_sessionmaker(engine, **handoff.runtime.sessions.kw["info"]) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def route_batch(handoff: Handoff, sessions: async_sessionmaker[AsyncSession], leads: list[LeadQualified]) -> None:
    """Applies a batch of lead.qualified in one transaction, as a consumer does."""
    handler = handoff.runtime.spec.consumers["handoff"][LeadQualified.event_type]
    async with sessions() as session, session.begin():
        for lead in leads:
            await handler(
                Incoming(id=new_id(), source="/baton/scoring", time=ROUTED_AT, data=lead, now=ROUTED_AT), session
            )


async def route_on_replicas(
    handoff: Handoff, sessions: list[async_sessionmaker[AsyncSession]], leads: list[LeadQualified]
) -> None:
    """Routes the leads in batches spread over the replicas, every batch at once."""
    batches = [leads[start : start + BATCH] for start in range(0, len(leads), BATCH)]
    await asyncio.gather(*(route_batch(handoff, sessions[n % len(sessions)], batch) for n, batch in enumerate(batches)))


async def test_mqls_routed_by_replicas_at_once_are_each_assigned_once_and_spread_within_one(
    settings: HandoffSettings,
) -> None:
    leads = [qualified(f"lead-{n:03d}") for n in range(LEADS)]
    # Each lead arrives twice, on different replicas, as a redelivery after a rebalance would bring it.
    twice = leads + leads[::-1]
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(*reps(7, capacity=1000))
        async with replica_sessions(handoff) as sessions:
            await route_on_replicas(handoff, sessions, twice)

        assignments = await handoff.assignments()
        kept, counted = await open_counts(handoff)

    assert sorted(a["lead_id"] for a in assignments) == sorted(lead.lead_id for lead in leads)
    per_rep = Counter(a["rep_id"] for a in assignments)
    assert len(per_rep) == 7
    assert max(per_rep.values()) - min(per_rep.values()) <= 1
    assert kept == counted == dict(per_rep)
    published = [LeadAssigned.model_validate(e.data) for e in await written_events(settings, LeadAssigned.event_type)]
    assert sorted(event.lead_id for event in published) == sorted(lead.lead_id for lead in leads)


async def test_replicas_routing_more_leads_than_reps_can_take_fill_them_to_capacity_and_queue_the_rest(
    settings: HandoffSettings,
) -> None:
    leads = [qualified(f"lead-{n:03d}") for n in range(LEADS)]
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(*reps(5, capacity=20))
        async with replica_sessions(handoff) as sessions:
            await route_on_replicas(handoff, sessions, leads)

        assignments = await handoff.assignments()
        kept, counted = await open_counts(handoff)

    statuses = Counter(a["status"] for a in assignments)
    assert statuses == {"assigned": 100, "queued": 400}
    assert kept == counted == {f"rep-{n:02d}": 20 for n in range(5)}
    assert len({a["lead_id"] for a in assignments}) == LEADS


async def test_one_queued_lead_handed_out_by_many_requests_at_once_goes_to_one_rep(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(*reps(6, capacity=0))
        await handoff.route(qualified("lead-1"))
        [queued] = await handoff.assignments(status="queued")
        for rep in reps(6):
            await handoff.client.patch(
                f"/v1/reps/{rep['rep_id']}", json={"capacity": 1, "status": "away"}, headers=handoff.admin
            )

        answers = await asyncio.gather(
            *(
                handoff.client.post(
                    f"/v1/assignments/{queued['assignment_id']}/events",
                    json={"type": "assigned", "rep_id": rep["rep_id"]},
                    headers=handoff.admin,
                )
                for rep in reps(6)
            )
        )

        assignments = await handoff.assignments()
        kept, counted = await open_counts(handoff)

    assert Counter(answer.status_code for answer in answers) == {200: 1, 409: 5}
    [winner] = [answer.json()["rep_id"] for answer in answers if answer.status_code == 200]
    assert [(a["lead_id"], a["rep_id"], a["status"]) for a in assignments] == [("lead-1", winner, "assigned")]
    assert kept == counted == {winner: 1}
    assert len(await written_events(settings, LeadAssigned.event_type)) == 1


async def test_draining_the_queue_while_replicas_route_puts_nobody_over_capacity(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(*reps(4, capacity=0))
        await handoff.route(*(qualified(f"queued-{n:03d}") for n in range(100)))
        async with replica_sessions(handoff) as sessions:

            async def drain(replica: async_sessionmaker[AsyncSession]) -> None:
                async with replica() as session, session.begin():
                    await drain_queue(session, now=ROUTED_AT, limit=30)

            more = [qualified(f"new-{n:03d}") for n in range(100)]
            await asyncio.gather(
                *(
                    handoff.client.patch(f"/v1/reps/{rep['rep_id']}", json={"capacity": 15}, headers=handoff.admin)
                    for rep in reps(4)
                ),
                route_on_replicas(handoff, sessions, more),
                *(drain(replica) for replica in sessions),
            )
            await drain(sessions[0])

        assignments = await handoff.assignments()
        kept, counted = await open_counts(handoff)

    assert kept == counted == {f"rep-{n:02d}": 15 for n in range(4)}
    assert Counter(a["status"] for a in assignments) == {"assigned": 60, "queued": 140}
    assert len({a["lead_id"] for a in assignments}) == 200
