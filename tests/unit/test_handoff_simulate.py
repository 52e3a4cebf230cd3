"""POST /v1/routing-rules:simulate on SQLite: recent MQLs, routed for real, replayed through proposed rules."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from baton.events import LeadAssigned, LeadRecycled, SlaBreached
from baton_handoff import simulate
from baton_handoff.models import Assignment, RepWorkload, RoutingCursor, RoutingPool
from baton_handoff.settings import HandoffSettings
from tests.unit.conftest import assert_problem
from tests.unit.test_handoff_api import (
    ANA,
    LONG_SLA,
    NOW,
    ROUTED_AT,
    Handoff,
    failing_fields,
    qualified,
    running_handoff,
    written_events,
)

BEN = {"rep_id": "rep-ben", "name": "Ben", "team": "amer", "capacity": 20}
SLA = {"accept_within": "PT15M", "touch_within": "PT4H"}


def rule(name: str, priority: int, *conditions: dict[str, Any], team: str | None, **fields: Any) -> dict[str, Any]:
    return {"name": name, "priority": priority, "conditions": list(conditions), "team": team, "sla": SLA, **fields}


def country(op: str, value: Any) -> dict[str, Any]:
    return {"field": "country", "op": op, "value": value}


GERMANY_TO_EMEA = [
    rule("germany", 1, country("eq", "DE"), team="emea", method="round_robin"),
    rule("elsewhere", 2, country("neq", "DE"), team="amer", method="round_robin"),
]


async def simulate_rules(handoff: Handoff, rules: list[dict[str, Any]], **body: Any) -> httpx.Response:
    return await handoff.client.post("/v1/routing-rules:simulate", json={"rules": rules, **body}, headers=handoff.admin)


async def simulated(handoff: Handoff, rules: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    response = await simulate_rules(handoff, rules, **body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def stored_state(handoff: Handoff) -> dict[str, list[tuple[Any, ...]]]:
    """Every row routing reads or writes: assignments, open counts, rotation pools and the routing lock."""
    async with handoff.runtime.sessions() as session:
        return {
            "assignments": [
                tuple(row)
                for row in await session.execute(
                    select(Assignment.id, Assignment.lead_id, Assignment.rep_id, Assignment.status).order_by(
                        Assignment.seq
                    )
                )
            ],
            "rep_workloads": [
                tuple(row)
                for row in await session.execute(
                    select(RepWorkload.rep_id, RepWorkload.open_assignments).order_by(RepWorkload.rep_id)
                )
            ],
            "routing_pools": [
                (pool.name, pool.last_rep_id, pool.current_weights)
                for pool in await session.scalars(select(RoutingPool).order_by(RoutingPool.name))
            ],
            "routing_cursors": [
                tuple(row) for row in await session.execute(select(RoutingCursor.name, RoutingCursor.last_rep_id))
            ],
        }


@pytest.fixture
def settings(tmp_path: Path) -> HandoffSettings:
    # Deadlines beyond the tests' clock: the SLA scheduler must not reassign what the simulation compares.
    return HandoffSettings(data_dir=tmp_path, **LONG_SLA)


@pytest.fixture
async def handoff(settings: HandoffSettings) -> AsyncIterator[Handoff]:
    async with running_handoff(settings) as service:
        yield service


async def test_a_rule_sending_germany_to_emea_moves_the_german_leads_there(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, BEN)
    await handoff.route(*(qualified(country=c) for c in ("DE", "DE", "DE", "US")))

    answer = await simulated(handoff, GERMANY_TO_EMEA)

    assert answer["leads"] == 4
    assert answer["actual"] == {
        "by_rep": {"rep-ana": 2, "rep-ben": 2},
        "by_team": {"amer": 2, "emea": 2},
        "by_rule": {"default": 4},
        "queued": 0,
    }
    assert answer["proposed"] == {
        "by_rep": {"rep-ana": 3, "rep-ben": 1},
        "by_team": {"amer": 1, "emea": 3},
        "by_rule": {"elsewhere": 1, "germany": 3},
        "queued": 0,
        "capacity_hits": 0,
        "unmatched": 0,
    }
    assert answer["changes"] == [
        {"rep_id": "rep-ana", "actual": 2, "proposed": 3, "delta": 1},
        {"rep_id": "rep-ben", "actual": 2, "proposed": 1, "delta": -1},
    ]


async def test_leads_no_proposed_rule_matches_fall_to_the_default_rule_and_are_counted_unmatched(
    handoff: Handoff,
) -> None:
    await handoff.add_reps(ANA, BEN)
    await handoff.route(*(qualified(country=c) for c in ("DE", "US", "FR")))

    answer = await simulated(handoff, [GERMANY_TO_EMEA[0]])

    assert answer["proposed"]["by_rule"] == {"default": 2, "germany": 1}
    assert answer["proposed"]["unmatched"] == 2
    assert sum(answer["proposed"]["by_rep"].values()) == 3


async def test_leads_no_rep_of_the_proposed_team_can_take_are_counted_queued(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, BEN)
    await handoff.route(*(qualified(country="DE") for _ in range(3)))
    away = await handoff.client.patch("/v1/reps/rep-ben", json={"status": "away"}, headers=handoff.admin)
    assert away.status_code == 200, away.text

    answer = await simulated(handoff, [rule("all-to-amer", 1, team="amer", method="round_robin")])

    assert answer["proposed"]["queued"] == 3
    assert answer["proposed"]["by_rep"] == {}
    assert answer["proposed"]["by_rule"] == {"all-to-amer": 3}
    assert answer["actual"]["queued"] == 0


async def test_working_hours_apply_as_they_did_when_each_lead_was_routed(handoff: Handoff) -> None:
    # NOW is 11:00 on Monday in Berlin, inside Ana's hours: leads that came in outside them find her off work.
    await handoff.add_reps({**ANA, "timezone": "Europe/Berlin", "working_hours": {"mon": [["09:00", "17:00"]]}}, BEN)
    for at in (
        datetime(2030, 6, 2, 10, 0, tzinfo=UTC),  # Sunday, no shift
        datetime(2030, 6, 3, 6, 30, tzinfo=UTC),  # 08:30 in Berlin
        datetime(2030, 6, 3, 7, 0, tzinfo=UTC),  # 09:00 in Berlin, as her shift begins
        datetime(2030, 6, 3, 8, 59, tzinfo=UTC),  # 10:59 in Berlin
    ):
        await handoff.route(qualified(country="DE"), at=at)

    answer = await simulated(handoff, [rule("germany", 1, country("eq", "DE"), team="emea", method="round_robin")])

    assert answer["actual"]["by_rep"] == {"rep-ana": 1, "rep-ben": 3}
    assert answer["proposed"]["by_rep"] == {"rep-ana": 2}
    assert answer["proposed"]["queued"] == 2


async def test_reps_at_capacity_are_skipped_and_counted_as_capacity_hits(handoff: Handoff) -> None:
    await handoff.add_reps({**ANA, "team": "sales"}, {**BEN, "team": "sales"})
    await handoff.route(*(qualified() for _ in range(4)))
    # Each now holds two open assignments; Ana may hold one more: the replay's first lead fills her up,
    # and the three after it find her at capacity.
    full = await handoff.client.patch("/v1/reps/rep-ana", json={"capacity": 3}, headers=handoff.admin)
    assert full.status_code == 200, full.text

    answer = await simulated(handoff, [rule("sales", 1, team="sales", method="round_robin")])

    assert answer["proposed"]["by_rep"] == {"rep-ana": 1, "rep-ben": 3}
    assert answer["proposed"]["capacity_hits"] == 3
    assert answer["proposed"]["queued"] == 0


async def test_an_account_owner_rule_sends_the_accounts_leads_to_its_owner_as_accounts_stand_today(
    handoff: Handoff,
) -> None:
    await handoff.add_reps(ANA, BEN)
    await handoff.route(*(qualified(email=f"buyer{n}@globex.example") for n in range(4)))
    account = {"domain": "globex.example", "name": "Globex", "owner_rep_id": "rep-ben"}
    created = await handoff.client.post("/v1/accounts", json=account, headers=handoff.admin)
    assert created.status_code == 201, created.text

    answer = await simulated(handoff, [rule("accounts", 1, team=None, method="account_owner")])

    assert answer["actual"]["by_rep"] == {"rep-ana": 2, "rep-ben": 2}
    assert answer["proposed"]["by_rep"] == {"rep-ben": 4}
    assert answer["changes"] == [
        {"rep_id": "rep-ana", "actual": 2, "proposed": 0, "delta": -2},
        {"rep_id": "rep-ben", "actual": 2, "proposed": 4, "delta": 2},
    ]


async def test_actual_is_what_routing_really_did_in_the_window(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, BEN)
    await handoff.route(qualified(country="US"), at=NOW - timedelta(days=40))
    await handoff.route(*(qualified(country=c) for c in ("DE", "US", "DE")), at=NOW - timedelta(days=2))
    await handoff.client.patch("/v1/reps/rep-ana", json={"status": "away"}, headers=handoff.admin)
    await handoff.client.patch("/v1/reps/rep-ben", json={"status": "away"}, headers=handoff.admin)
    await handoff.route(qualified(country="FR"), at=NOW - timedelta(days=1))
    # The MQLs of the window are first attempts; the lead from before it may meanwhile have breached its SLA
    # and been routed again.
    routed = [a for a in await handoff.assignments() if a["created_at"] >= "2030-05-04" and a["attempt"] == 1]

    answer = await simulated(handoff, GERMANY_TO_EMEA, days=30)

    assert answer["window"] == {"from": "2030-05-04T09:00:00Z", "to": "2030-06-03T09:00:00Z"}
    assert answer["leads"] == len(routed) == 4
    assert answer["actual"] == {
        "by_rep": dict(Counter(a["rep_id"] for a in routed if a["rep_id"] is not None)),
        "by_team": dict(Counter(a["team"] for a in routed if a["rep_id"] is not None)),
        "by_rule": dict(Counter(a["rule"] for a in routed)),
        "queued": 1,
    }
    assert answer["proposed"]["queued"] == 4


async def test_simulating_assigns_nothing_and_writes_nothing(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA, BEN)
        await handoff.route(*(qualified(country=c) for c in ("DE", "US", "DE", "US")))
        before = await stored_state(handoff)

        answer = await simulated(handoff, GERMANY_TO_EMEA)

        assert answer["proposed"]["by_rule"] == {"elsewhere": 2, "germany": 2}
        assert await stored_state(handoff) == before
    assigned = await written_events(settings, LeadAssigned.event_type)
    assert sorted(e.data["assignment_id"] for e in assigned) == sorted(row[0] for row in before["assignments"])
    assert await written_events(settings, LeadRecycled.event_type) == []
    assert await written_events(settings, SlaBreached.event_type) == []


@pytest.mark.parametrize(
    "headers",
    [
        {"scopes": ("assignments:read", "assignments:write")},
        {"scopes": ("assignments:read",), "team": "emea"},
        {"scopes": ("assignments:read",), "rep_id": "rep-ana"},
    ],
    ids=["integration", "team-lead", "rep"],
)
async def test_simulating_needs_an_admin_token(handoff: Handoff, headers: dict[str, Any]) -> None:
    token = handoff.token(*headers.pop("scopes"), **headers)

    response = await handoff.client.post("/v1/routing-rules:simulate", json={"rules": []}, headers=token)

    assert_problem(response, 403)


async def test_simulating_without_a_token_is_unauthorized(handoff: Handoff) -> None:
    response = await handoff.client.post("/v1/routing-rules:simulate", json={"rules": []})

    assert_problem(response, 401)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"days": 0}, "days"),
        ({"days": 366}, "days"),
        ({"rules": [rule("r", 1, {"field": "shoe_size", "op": "eq", "value": 42}, team=None)]}, "rules"),
        ({"rules": [rule("r", 1, {"field": "country", "op": "like", "value": "D%"}, team=None)]}, "rules"),
        ({"rules": [rule("r", 1, team=None, method="random")]}, "rules"),
        ({"rules": [rule("r", 1, team=None, sla={"accept_within": "soon", "touch_within": "PT4H"})]}, "rules"),
        ({"rules": [rule("r", 1, team="apac")]}, "rules"),
        ({"rules": [rule("r", 1, team="emea", fallback_team="apac")]}, "rules"),
        ({"rules": [rule("r", 1, team=None), rule("r", 2, team=None)]}, "rules"),
        ({"rules": [rule(f"r{n}", n, team=None) for n in range(simulate.MAX_RULES + 1)]}, "rules"),
        ({"rules": [rule("r", 1, team=None)], "publish": True}, "publish"),
    ],
)
async def test_a_proposed_rule_set_that_cannot_be_is_refused_naming_the_field(
    handoff: Handoff, body: dict[str, Any], field: str
) -> None:
    await handoff.add_reps(ANA, BEN)

    response = await handoff.client.post(
        "/v1/routing-rules:simulate", json={"rules": [], **body}, headers=handoff.admin
    )

    assert failing_fields(response) == {field}


async def test_an_unknown_team_is_named_down_to_the_rule_and_field(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)

    response = await simulate_rules(handoff, [GERMANY_TO_EMEA[0], rule("r", 2, team="emea", fallback_team="apac")])

    body = assert_problem(response, 422)
    assert [error["loc"] for error in body["errors"]] == [["body", "rules", 1, "fallback_team"]]
    assert "apac" in body["detail"]


async def test_more_mqls_than_a_simulation_replays_asks_for_fewer_days(
    handoff: Handoff, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(simulate, "MAX_REPLAYED_LEADS", 2)
    await handoff.add_reps(ANA)
    await handoff.route(qualified(), qualified(), at=NOW - timedelta(days=3))
    await handoff.route(qualified(), at=ROUTED_AT)

    too_many = await simulate_rules(handoff, GERMANY_TO_EMEA[:1], days=30)
    fewer = await simulated(handoff, GERMANY_TO_EMEA[:1], days=1)

    assert failing_fields(too_many) == {"days"}
    assert "fewer days" in too_many.json()["detail"]
    assert fewer["leads"] == 1
