"""SLA clocks on the real PostgreSQL: replicas split due breaches and fire each once; a restart fires missed ones."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.db import create_engine, create_sessionmaker
from baton.events import LeadAssigned, SlaBreached
from baton.outbox import SOURCE_KEY
from baton_handoff.settings import HandoffSettings
from baton_handoff.sla import run_due
from tests.conftest import LogSignal
from tests.unit.test_handoff_api import NOW, Handoff, qualified, written_events
from tests.unit.test_handoff_sla import ACCEPT_DUE, ANA, BEN, CAI, breaches, running_at, started

pytestmark = pytest.mark.integration

DAN = {**ANA, "rep_id": "rep-dan", "name": "Dan"}
ROOMY = [{**rep, "capacity": 200} for rep in (ANA, BEN, CAI, DAN)]


@pytest.fixture
async def settings(tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path, database_url=await fresh_database("handoff"))


@asynccontextmanager
async def replicas(settings: HandoffSettings, count: int) -> AsyncIterator[list[async_sessionmaker[AsyncSession]]]:
    """Session factories on engines of their own, as separate handoff processes have."""
    engines = [create_engine(settings.database_url_for("baton_handoff")) for _ in range(count)]
    try:
        yield [create_sessionmaker(engine, **{SOURCE_KEY: "/baton/handoff"}) for engine in engines]
    finally:
        for engine in engines:
            await engine.dispose()


async def scheduler_until_nothing_is_due(sessions: async_sessionmaker[AsyncSession]) -> list[SlaBreached]:
    """Ticks at ACCEPT_DUE in small batches until a tick finds nothing it can claim."""
    fired: list[SlaBreached] = []
    while batch := await run_due(sessions, ACCEPT_DUE, limit=10):
        fired.extend(batch)
    return fired


async def lead_holding(handoff: Handoff) -> Counter[str]:
    return Counter(a["lead_id"] for a in await handoff.assignments() if a["status"] in ("assigned", "queued"))


async def test_two_schedulers_over_200_due_breaches_act_on_each_exactly_once(settings: HandoffSettings) -> None:
    leads = [f"lead-{n:03}" for n in range(200)]
    async with started(settings, *ROOMY) as handoff:
        await handoff.route(*(qualified(lead) for lead in leads), at=NOW)
        first = {a["assignment_id"] for a in await handoff.assignments()}
        async with replicas(settings, 2) as schedulers:
            fired = await asyncio.gather(*(scheduler_until_nothing_is_due(sessions) for sessions in schedulers))
            left = await run_due(schedulers[0], ACCEPT_DUE)
        held = await lead_holding(handoff)
        attempts = Counter(a["attempt"] for a in await handoff.assignments() if a["status"] == "assigned")

    assert left == []
    assert sorted(b.assignment_id for b in fired[0] + fired[1]) == sorted(first)
    published = Counter(b.assignment_id for b in breaches(await written_events(settings, SlaBreached.event_type)))
    assert published == dict.fromkeys(first, 1)
    assert held == dict.fromkeys(leads, 1)
    assert attempts == {2: 200}
    assert len(await written_events(settings, LeadAssigned.event_type)) == 400


async def test_a_rep_accepting_at_the_deadline_either_keeps_the_lead_or_loses_it_to_one_breach(
    settings: HandoffSettings,
) -> None:
    leads = [f"lead-{n:02}" for n in range(40)]
    async with started(settings, *ROOMY) as handoff:
        await handoff.route(*(qualified(lead) for lead in leads), at=NOW)
        first = [a["assignment_id"] for a in await handoff.assignments()]
        async with replicas(settings, 1) as [scheduler]:
            fired, *answers = await asyncio.gather(
                scheduler_until_nothing_is_due(scheduler),
                *(handoff.report(assignment_id, {"type": "accepted"}) for assignment_id in first),
            )
        status = {a["assignment_id"]: a["status"] for a in await handoff.assignments()}
        held = await lead_holding(handoff) + Counter(
            a["lead_id"] for a in await handoff.assignments() if a["status"] == "accepted"
        )

    breached = {b.assignment_id for b in fired}
    for assignment_id, answer in zip(first, answers, strict=True):
        if assignment_id in breached:
            assert answer.status_code == 409, answer.text
            assert status[assignment_id] == "reassigned"
        else:
            assert answer.status_code == 200, answer.text
            assert status[assignment_id] == "accepted"
    published = Counter(b.assignment_id for b in breaches(await written_events(settings, SlaBreached.event_type)))
    assert published == dict.fromkeys(breached, 1)
    assert held == dict.fromkeys(leads, 1)


async def test_a_breach_that_fell_due_while_handoff_was_stopped_fires_when_it_starts(
    settings: HandoffSettings,
) -> None:
    later = ACCEPT_DUE + timedelta(hours=1)
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), at=NOW)
        [first] = await handoff.assignments()

    with LogSignal("baton_handoff.sla", "sla breaches acted on") as acted:
        async with running_at(settings, lambda: later) as handoff:
            async with asyncio.timeout(10):
                await acted.seen.wait()
            after = await handoff.assignments()

    assert [(a["attempt"], a["status"]) for a in after] == [(1, "reassigned"), (2, "assigned")]
    assert after[1]["rep_id"] != first["rep_id"]
    [breach] = breaches(await written_events(settings, SlaBreached.event_type))
    assert (breach.assignment_id, breach.due_at, breach.breached_at) == (first["assignment_id"], ACCEPT_DUE, later)
