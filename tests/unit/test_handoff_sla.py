"""SLA clocks on SQLite: breaches found by deadline, acted on once, the lead routed on or escalated to the queue.

The app's own clock stands still at ``NOW``, so its scheduler finds nothing due; each test moves time
by calling ``run_due`` with a later ``now``, as the scheduler does on every tick.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

import baton_handoff.sla
from baton.events import Clock, LeadAssigned, SlaBreached
from baton_handoff.app import create_app
from baton_handoff.models import Assignment
from baton_handoff.service import assign_lead, get_assignment
from baton_handoff.settings import HandoffSettings
from baton_handoff.sla import SlaRisk, act_on_breach, at_risk_counts, attempts_left, breached_sla, run_due
from tests.conftest import LogSignal
from tests.unit.conftest import READ_TIMEOUT_SECONDS
from tests.unit.test_handoff_api import NOW, Handoff, qualified, written_events

ACCEPT_WITHIN = timedelta(seconds=2)
TOUCH_WITHIN = timedelta(seconds=10)
ACCEPT_DUE = NOW + ACCEPT_WITHIN
TOUCH_DUE = NOW + TOUCH_WITHIN

ANA = {"rep_id": "rep-ana", "name": "Ana", "team": "emea", "capacity": 20}
BEN = {**ANA, "rep_id": "rep-ben", "name": "Ben"}
CAI = {**ANA, "rep_id": "rep-cai", "name": "Cai"}
# Leads escalated to emea-leads wait there: its only rep is away, so nothing drains them.
LEA = {**ANA, "rep_id": "rep-lea", "name": "Lea", "team": "emea-leads", "status": "away"}


def fast_rule(**changes: Any) -> dict[str, Any]:
    """A rule for every lead with a two-second accept clock and a ten-second touch clock on the wall."""
    return {
        "name": "fast",
        "priority": 1,
        "conditions": [],
        "team": "emea",
        "method": "round_robin",
        "sla": {"accept_within": "PT2S", "touch_within": "PT10S", "clock": "wall_clock"},
        "max_attempts": 3,
        "fallback_team": "emea-leads",
        **changes,
    }


@pytest.fixture
def settings(tmp_path: Path) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path)


@asynccontextmanager
async def running_at(settings: HandoffSettings, clock: Clock) -> AsyncIterator[Handoff]:
    """handoff started with ``clock`` as its time, as ``running_handoff`` starts it with a clock at NOW."""
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://handoff") as client,
    ):
        yield Handoff(client=client, runtime=app.state.runtime)


@asynccontextmanager
async def started(
    settings: HandoffSettings, *reps: dict[str, Any], clock: Clock = lambda: NOW, **rule: Any
) -> AsyncIterator[Handoff]:
    """handoff with emea-leads' Lea, ``reps`` and the fast rule (``rule`` changes it), its clock at NOW by default."""
    async with running_at(settings, clock) as handoff:
        await handoff.add_reps(LEA, *reps)
        created = await handoff.client.post("/v1/routing-rules", json=fast_rule(**rule), headers=handoff.admin)
        assert created.status_code == 201, created.text
        yield handoff


async def assignments_of(handoff: Handoff, lead_id: str) -> list[dict[str, Any]]:
    return [a for a in await handoff.assignments() if a["lead_id"] == lead_id]


async def accept(handoff: Handoff, assignment_id: str) -> None:
    answer = await handoff.report(assignment_id, {"type": "accepted"})
    assert answer.status_code == 200, answer.text


def breaches(events: list[Any]) -> list[SlaBreached]:
    return [SlaBreached.model_validate(e.data) for e in events]


# which clock ran out


@pytest.mark.parametrize(
    ("status", "now", "expected"),
    [
        ("assigned", ACCEPT_DUE - timedelta(microseconds=1), None),
        ("assigned", ACCEPT_DUE, ("accept", ACCEPT_DUE)),
        ("assigned", TOUCH_DUE, ("accept", ACCEPT_DUE)),
        ("accepted", ACCEPT_DUE, None),
        ("accepted", TOUCH_DUE, ("touch", TOUCH_DUE)),
        ("contacted", TOUCH_DUE, None),
        ("queued", TOUCH_DUE, None),
        ("reassigned", TOUCH_DUE, None),
    ],
)
def test_the_clock_that_ran_out_depends_on_the_status_and_the_earlier_deadline_wins(
    status: str, now: datetime, expected: tuple[str, datetime] | None
) -> None:
    assert breached_sla(status=status, accept_due_at=ACCEPT_DUE, touch_due_at=TOUCH_DUE, now=now) == expected


def test_a_touch_deadline_earlier_than_the_accept_deadline_is_the_one_breached() -> None:
    assert breached_sla(status="assigned", accept_due_at=TOUCH_DUE, touch_due_at=ACCEPT_DUE, now=TOUCH_DUE) == (
        "touch",
        ACCEPT_DUE,
    )


def test_an_assignment_without_deadlines_never_breaches() -> None:
    assert breached_sla(status="assigned", accept_due_at=None, touch_due_at=None, now=TOUCH_DUE) is None


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "left"), [(1, 3, True), (2, 3, True), (3, 3, False), (1, 1, False)]
)
def test_a_lead_moves_on_until_its_attempts_are_spent(attempt: int, max_attempts: int, left: bool) -> None:
    assert attempts_left(attempt=attempt, max_attempts=max_attempts) is left


# breaches acted on


async def test_an_accept_deadline_passed_reassigns_the_lead_to_another_rep_and_publishes_one_breach(
    settings: HandoffSettings,
) -> None:
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), at=NOW)
        [first] = await assignments_of(handoff, "lead-1")

        early = await run_due(handoff.runtime.sessions, ACCEPT_DUE - timedelta(milliseconds=1))
        fired = await run_due(handoff.runtime.sessions, ACCEPT_DUE)
        again = await run_due(handoff.runtime.sessions, ACCEPT_DUE + timedelta(milliseconds=500))
        after = await assignments_of(handoff, "lead-1")

    assert early == [] and again == []
    assert [(b.assignment_id, b.sla, b.action) for b in fired] == [(first["assignment_id"], "accept", "reassigned")]
    assert [(a["rep_id"], a["attempt"], a["status"]) for a in after] == [
        (first["rep_id"], 1, "reassigned"),
        ("rep-ben" if first["rep_id"] == "rep-ana" else "rep-ana", 2, "assigned"),
    ]
    [published] = breaches(await written_events(settings, SlaBreached.event_type))
    assert published == SlaBreached(
        lead_id="lead-1",
        assignment_id=first["assignment_id"],
        rep_id=first["rep_id"],
        sla="accept",
        due_at=ACCEPT_DUE,
        breached_at=ACCEPT_DUE,
        action="reassigned",
    )
    assigned = [LeadAssigned.model_validate(e.data) for e in await written_events(settings, LeadAssigned.event_type)]
    # Whether the relay had published them yet or not, so in no particular order.
    assert sorted((a.attempt, a.assignment_id, a.rep_id) for a in assigned) == [
        (1, first["assignment_id"], first["rep_id"]),
        (2, after[1]["assignment_id"], after[1]["rep_id"]),
    ]


async def test_a_touch_deadline_passed_after_acceptance_breaches_the_touch_sla(settings: HandoffSettings) -> None:
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), at=NOW)
        [first] = await assignments_of(handoff, "lead-1")
        await accept(handoff, first["assignment_id"])

        at_accept_deadline = await run_due(handoff.runtime.sessions, ACCEPT_DUE)
        fired = await run_due(handoff.runtime.sessions, TOUCH_DUE)
        after = await assignments_of(handoff, "lead-1")

    assert at_accept_deadline == []
    assert [(b.sla, b.due_at, b.action) for b in fired] == [("touch", TOUCH_DUE, "reassigned")]
    assert [(a["attempt"], a["status"]) for a in after] == [(1, "reassigned"), (2, "assigned")]


async def test_a_contacted_lead_has_no_clock_left_to_breach(settings: HandoffSettings) -> None:
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), at=NOW)
        [first] = await assignments_of(handoff, "lead-1")
        await accept(handoff, first["assignment_id"])
        contacted = await handoff.report(first["assignment_id"], {"type": "contacted"})

        fired = await run_due(handoff.runtime.sessions, TOUCH_DUE + timedelta(days=30))

    assert contacted.status_code == 200, contacted.text
    assert fired == []
    assert await written_events(settings, SlaBreached.event_type) == []


async def test_a_breach_acted_on_after_the_rep_accepted_at_the_last_moment_changes_nothing(
    settings: HandoffSettings,
) -> None:
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), at=NOW)
        [first] = await assignments_of(handoff, "lead-1")
        async with handoff.runtime.sessions() as session:
            # Read as the scheduler read it, still assigned, just before the rep's acceptance lands.
            seen = await get_assignment(session, assignment_id=first["assignment_id"])
        assert seen is not None and seen.status == "assigned"
        await accept(handoff, first["assignment_id"])

        async with handoff.runtime.sessions() as session, session.begin():
            fired = await act_on_breach(session, assignment=seen, now=ACCEPT_DUE)
        after = await assignments_of(handoff, "lead-1")

    assert fired is None
    assert [(a["attempt"], a["status"]) for a in after] == [(1, "accepted")]
    assert await written_events(settings, SlaBreached.event_type) == []


async def test_the_last_attempt_breaching_escalates_the_lead_to_the_fallback_queue(settings: HandoffSettings) -> None:
    async with started(settings, ANA, BEN, CAI, max_attempts=2) as handoff:
        await handoff.route(qualified("lead-1"), at=NOW)
        first = await run_due(handoff.runtime.sessions, ACCEPT_DUE)
        second = await run_due(handoff.runtime.sessions, ACCEPT_DUE + ACCEPT_WITHIN)
        after = await assignments_of(handoff, "lead-1")
        third = await run_due(handoff.runtime.sessions, TOUCH_DUE + timedelta(days=1))

    assert [b.action for b in first + second] == ["reassigned", "escalated"]
    assert third == []
    assert [(a["attempt"], a["status"], a["rep_id"] is None, a["team"]) for a in after] == [
        (1, "reassigned", False, "emea"),
        (2, "reassigned", False, "emea"),
        (3, "queued", True, "emea-leads"),
    ]
    assert after[0]["rep_id"] != after[1]["rep_id"]
    published = breaches(await written_events(settings, SlaBreached.event_type))
    assert Counter((b.assignment_id, b.action) for b in published) == {
        (after[0]["assignment_id"], "reassigned"): 1,
        (after[1]["assignment_id"], "escalated"): 1,
    }


async def test_a_breach_with_nobody_left_who_has_not_had_the_lead_escalates_it(settings: HandoffSettings) -> None:
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), at=NOW)
        fired = await run_due(handoff.runtime.sessions, ACCEPT_DUE)
        fired += await run_due(handoff.runtime.sessions, ACCEPT_DUE + ACCEPT_WITHIN)
        after = await assignments_of(handoff, "lead-1")

    assert [b.action for b in fired] == ["reassigned", "escalated"]
    assert [(a["attempt"], a["status"], a["team"]) for a in after] == [
        (1, "reassigned", "emea"),
        (2, "reassigned", "emea"),
        (3, "queued", "emea-leads"),
    ]
    assert Counter(b.action for b in breaches(await written_events(settings, SlaBreached.event_type))) == {
        "reassigned": 1,
        "escalated": 1,
    }


async def test_breaches_of_many_leads_due_at_once_are_each_acted_on_once(settings: HandoffSettings) -> None:
    leads = [f"lead-{n}" for n in range(12)]
    async with started(settings, ANA, BEN, CAI) as handoff:
        await handoff.route(*(qualified(lead) for lead in leads), at=NOW)

        fired = await run_due(handoff.runtime.sessions, ACCEPT_DUE, limit=5)
        fired += await run_due(handoff.runtime.sessions, ACCEPT_DUE, limit=5)
        fired += await run_due(handoff.runtime.sessions, ACCEPT_DUE, limit=5)
        last = await run_due(handoff.runtime.sessions, ACCEPT_DUE, limit=5)
        held = Counter(a["lead_id"] for a in await handoff.assignments() if a["status"] == "assigned")

    assert [len(fired), last] == [12, []]
    assert sorted(b.lead_id for b in fired) == sorted(leads)
    assert held == dict.fromkeys(leads, 1)


async def test_the_scheduler_acts_on_its_own_once_its_clock_passes_a_deadline(settings: HandoffSettings) -> None:
    clock = [NOW]
    with LogSignal("baton_handoff.sla", "sla breaches acted on") as acted:
        async with started(settings, ANA, BEN, clock=lambda: clock[0]) as handoff:
            await handoff.route(qualified("lead-1"), at=NOW)
            clock[0] = ACCEPT_DUE
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                await acted.seen.wait()
            after = await assignments_of(handoff, "lead-1")

    assert [(a["attempt"], a["status"]) for a in after] == [(1, "reassigned"), (2, "assigned")]
    [published] = breaches(await written_events(settings, SlaBreached.event_type))
    assert (published.assignment_id, published.breached_at) == (after[0]["assignment_id"], ACCEPT_DUE)


async def test_a_breach_that_cannot_be_acted_on_does_not_hold_back_the_others(
    settings: HandoffSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def routing_that_fails_for_lead_1(session: AsyncSession, **route: Any) -> Assignment:
        if route["lead_id"] == "lead-1":
            raise RuntimeError("lead-1 cannot be routed")
        return await assign_lead(session, **route)

    monkeypatch.setattr(baton_handoff.sla, "assign_lead", routing_that_fails_for_lead_1)
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), qualified("lead-2"), at=NOW)

        fired = await run_due(handoff.runtime.sessions, ACCEPT_DUE)
        after = [(a["lead_id"], a["attempt"], a["status"]) for a in await handoff.assignments()]

    assert [b.lead_id for b in fired] == ["lead-2"]
    assert sorted(after) == [("lead-1", 1, "assigned"), ("lead-2", 1, "reassigned"), ("lead-2", 2, "assigned")]
    assert [b.lead_id for b in breaches(await written_events(settings, SlaBreached.event_type))] == ["lead-2"]


# at risk


async def test_at_risk_counts_show_each_reps_open_assignments_past_80_percent_and_past_the_deadline(
    settings: HandoffSettings,
) -> None:
    async with started(settings, ANA, BEN) as handoff:
        await handoff.route(qualified("lead-1"), qualified("lead-2"), qualified("lead-3"), at=NOW)
        by_lead = {a["lead_id"]: a for a in await handoff.assignments()}
        await accept(handoff, by_lead["lead-3"]["assignment_id"])

        async with handoff.runtime.sessions() as session:
            before = await at_risk_counts(session, now=NOW + ACCEPT_WITHIN * 0.8 - timedelta(milliseconds=1))
            at_80_percent = await at_risk_counts(session, now=NOW + ACCEPT_WITHIN * 0.8)
            late = await at_risk_counts(session, now=ACCEPT_DUE)
            touch = await at_risk_counts(session, now=NOW + TOUCH_WITHIN * 0.8)

    reps = Counter(by_lead[lead]["rep_id"] for lead in ("lead-1", "lead-2"))
    accepted_by = by_lead["lead-3"]["rep_id"]
    assert before == []
    assert at_80_percent == [SlaRisk("emea", rep, "accept", at_risk=n, breached=0) for rep, n in sorted(reps.items())]
    assert late == [SlaRisk("emea", rep, "accept", at_risk=0, breached=n) for rep, n in sorted(reps.items())]
    touching = Counter([*reps.elements(), accepted_by])
    assert [c for c in touch if c.sla == "touch"] == [
        SlaRisk("emea", rep, "touch", at_risk=n, breached=0) for rep, n in sorted(touching.items())
    ]
