"""handoff on the real PostgreSQL: concurrent reports, routings and rep creations settle in the database."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from baton.events import LeadAssigned, LeadStatusChanged
from baton_handoff.domain import OPEN_STATUSES
from baton_handoff.settings import HandoffSettings
from tests.unit.test_handoff_api import (
    ANA,
    LONG_SLA,
    Handoff,
    assert_one_status_change_each,
    failing_fields,
    one_report_wins_per_assignment,
    open_counts,
    qualified,
    report_all_at_once,
    running_handoff,
    second_assignment_of,
    upgrading_closes_duplicate_open_assignments_and_counts_open_ones,
    written_events,
)

pytestmark = pytest.mark.integration

BEN = {**ANA, "rep_id": "rep-ben", "name": "Ben"}
CAI = {**ANA, "rep_id": "rep-cai", "name": "Cai", "team": "amer"}


@pytest.fixture
async def settings(tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path, database_url=await fresh_database("handoff"), **LONG_SLA)


async def test_accept_and_reject_at_the_same_moment_on_postgresql_one_wins(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA, BEN)
        ids = await one_report_wins_per_assignment(handoff, pairs=10)
        kept, counted = await open_counts(handoff)

    assert_one_status_change_each(await written_events(settings, LeadStatusChanged.event_type), ids)
    assert kept == counted


async def test_the_same_lead_qualified_routed_by_two_sessions_at_once_is_assigned_once(
    settings: HandoffSettings,
) -> None:
    leads = [f"lead-{n}" for n in range(8)]
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA, BEN)

        await asyncio.gather(*(handoff.route(qualified(lead)) for lead in leads for _ in range(2)))

        assigned = sorted(a["lead_id"] for a in await handoff.assignments())
        kept, counted = await open_counts(handoff)

    assert assigned == leads
    assert kept == counted == {"rep-ana": 4, "rep-ben": 4}
    assert len(await written_events(settings, LeadAssigned.event_type)) == len(leads)


async def test_the_database_refuses_a_second_open_assignment_for_a_lead(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA)
        await handoff.route(qualified("lead-1"))

        with pytest.raises(IntegrityError, match="uq_assignments_open_lead"):
            async with handoff.runtime.sessions() as session, session.begin():
                session.add(second_assignment_of("lead-1"))


async def test_one_rep_created_by_many_requests_at_once_is_created_once_and_the_rest_conflict(
    settings: HandoffSettings,
) -> None:
    async with running_handoff(settings) as handoff:
        answers = await asyncio.gather(
            *(
                handoff.client.post("/v1/reps", json={**ANA, "name": f"Ana {n}"}, headers=handoff.admin)
                for n in range(10)
            )
        )
        listed = await handoff.client.get("/v1/reps", headers=handoff.admin)

    assert Counter(answer.status_code for answer in answers) == {201: 1, 409: 9}
    [winner] = [answer.json()["name"] for answer in answers if answer.status_code == 201]
    assert [(rep["rep_id"], rep["name"]) for rep in listed.json()["items"]] == [("rep-ana", winner)]


async def test_patch_clearing_a_reps_territories_is_refused_and_the_reps_stay_listable(
    settings: HandoffSettings,
) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA)

        patched = await handoff.client.patch("/v1/reps/rep-ana", json={"territories": None}, headers=handoff.admin)
        listed = await handoff.client.get("/v1/reps", headers=handoff.admin)

    assert failing_fields(patched) == {"territories"}
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"][0]["territories"] == ["DE"]


async def routing_meanwhile(handoff: Handoff, transactions: int, leads_each: int) -> None:
    await asyncio.gather(*(handoff.route(*(qualified() for _ in range(leads_each))) for _ in range(transactions)))


async def test_open_assignment_counts_stay_exact_under_concurrent_reports_and_routing(
    settings: HandoffSettings,
) -> None:
    # In each round every assignment in one status gets two reports at once that cannot both
    # succeed (every other one a different pair), while more leads are routed; the rounds walk the
    # lifecycle to its end through every closing status.
    rounds = [
        ("assigned", [("accepted", "rejected"), ("rejected", "accepted")]),
        ("accepted", [("contacted", "contacted"), ("lost", "lost")]),
        ("contacted", [("qualified", "qualified"), ("lost", "lost")]),
        ("qualified", [("won", "lost"), ("won", "won")]),
    ]
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA, BEN, CAI)
        await handoff.route(*(qualified() for _ in range(30)))
        for status, pairs in rounds:
            in_status = await handoff.assignments(status=status)
            reports = [
                (assignment["assignment_id"], kind)
                for n, assignment in enumerate(in_status)
                for kind in pairs[n % len(pairs)]
            ]

            answers, _ = await asyncio.gather(report_all_at_once(handoff, reports), routing_meanwhile(handoff, 3, 4))

            assert Counter(answer.status_code for answer in answers) == {200: len(in_status), 409: len(in_status)}
            kept, counted = await open_counts(handoff)
            assert kept == counted
        statuses = Counter(a["status"] for a in await handoff.assignments())

    assert sum(statuses.values()) == 30 + len(rounds) * 12
    assert {"rejected", "lost", "won"} <= set(statuses)
    assert sum(counted.values()) == sum(n for status, n in statuses.items() if status in OPEN_STATUSES)


async def test_upgrading_postgresql_closes_duplicate_open_assignments_and_counts_open_ones(
    settings: HandoffSettings,
) -> None:
    await upgrading_closes_duplicate_open_assignments_and_counts_open_ones(settings)
