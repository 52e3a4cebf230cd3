"""handoff's accounts and routing rules, routing by them, the fallback queue, decisions and rejections, on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.events import LeadAssigned, LeadRecycled
from baton_handoff.settings import HandoffSettings
from tests.unit.conftest import assert_problem
from tests.unit.test_handoff_api import (
    ANA,
    LONG_SLA,
    NOW,
    ROUTED_AT,
    Handoff,
    failing_fields,
    open_counts,
    qualified,
    running_handoff,
    written_events,
)

BEN = {**ANA, "rep_id": "rep-ben", "name": "Ben"}
CAI = {**ANA, "rep_id": "rep-cai", "name": "Cai", "team": "amer", "territories": ["US"]}
ACCOUNT = {"domain": "acme.com", "name": "Acme", "owner_rep_id": "rep-ana"}
SLA = {"accept_within": "PT2H", "touch_within": "PT8H", "clock": "wall_clock"}
US_RULE = {
    "name": "us-inbound",
    "priority": 10,
    "conditions": [{"field": "country", "op": "eq", "value": "US"}],
    "team": "amer",
    "method": "round_robin",
    "sla": SLA,
    "max_attempts": 2,
    "fallback_team": "emea",
}


@pytest.fixture
def settings(tmp_path: Path) -> HandoffSettings:
    # Two hours to accept by default: the tests route an hour before their clock's now, which the SLA
    # scheduler must leave alone.
    return HandoffSettings(data_dir=tmp_path, accept_within=timedelta(hours=2))


@pytest.fixture
async def handoff(settings: HandoffSettings) -> AsyncIterator[Handoff]:
    async with running_handoff(settings) as service:
        yield service


async def audited(handoff: Handoff, entity: str) -> list[tuple[str, str]]:
    listed = await handoff.client.get("/v1/audit", params={"entity": entity}, headers=handoff.admin)
    assert listed.status_code == 200, listed.text
    return [(entry["action"], entry["entity_id"]) for entry in listed.json()["items"]]


# accounts


async def test_admin_creates_changes_and_deletes_an_account_and_each_change_is_audited(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, BEN)

    created = await handoff.client.post("/v1/accounts", json={**ACCOUNT, "domain": "ACME.com"}, headers=handoff.admin)
    patched = await handoff.client.patch(
        "/v1/accounts/acme.com", json={"owner_rep_id": "rep-ben"}, headers=handoff.admin
    )
    listed = await handoff.client.get("/v1/accounts", headers=handoff.admin)
    deleted = await handoff.client.delete("/v1/accounts/acme.com", headers=handoff.admin)

    assert created.status_code == 201, created.text
    assert created.json()["domain"] == "acme.com"
    assert patched.status_code == 200, patched.text
    assert [(a["domain"], a["owner_rep_id"]) for a in listed.json()["items"]] == [("acme.com", "rep-ben")]
    assert deleted.status_code == 204
    assert_problem(await handoff.client.get("/v1/accounts/acme.com", headers=handoff.admin), 404)
    assert sorted(await audited(handoff, "account")) == [
        ("create", "acme.com"),
        ("delete", "acme.com"),
        ("update", "acme.com"),
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("domain", "not a domain"),
        ("domain", "acme"),
        ("domain", "a" * 250 + ".com"),
        ("name", ""),
        ("owner_rep_id", "rep-nobody"),
    ],
)
async def test_an_account_that_cannot_be_is_refused_naming_the_field(handoff: Handoff, field: str, value: Any) -> None:
    await handoff.add_reps(ANA)

    response = await handoff.client.post("/v1/accounts", json={**ACCOUNT, field: value}, headers=handoff.admin)

    assert failing_fields(response) == {field}
    assert (await handoff.client.get("/v1/accounts", headers=handoff.admin)).json()["items"] == []


async def test_the_same_account_twice_is_a_conflict(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.client.post("/v1/accounts", json=ACCOUNT, headers=handoff.admin)

    response = await handoff.client.post("/v1/accounts", json=ACCOUNT, headers=handoff.admin)

    assert "acme.com" in assert_problem(response, 409)["detail"]


async def test_a_lead_from_an_accounts_domain_goes_to_its_owner(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, BEN)
    await handoff.client.post("/v1/accounts", json={**ACCOUNT, "owner_rep_id": "rep-ben"}, headers=handoff.admin)
    owner_rule = {**US_RULE, "name": "accounts", "conditions": [], "team": None, "fallback_team": None}
    created = await handoff.client.post(
        "/v1/routing-rules", json={**owner_rule, "method": "account_owner"}, headers=handoff.admin
    )
    assert created.status_code == 201, created.text

    await handoff.route(*(qualified(email=f"buyer{n}@acme.com") for n in range(3)))

    assert [a["rep_id"] for a in await handoff.assignments()] == ["rep-ben"] * 3


# routing rules


async def test_admin_creates_a_routing_rule_and_reads_it_back_with_iso_durations(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, CAI)

    created = await handoff.client.post("/v1/routing-rules", json=US_RULE, headers=handoff.admin)
    fetched = await handoff.client.get("/v1/routing-rules/us-inbound", headers=handoff.admin)

    assert created.status_code == 201, created.text
    assert {name: fetched.json()[name] for name in US_RULE} == US_RULE
    assert await audited(handoff, "routing_rule") == [("create", "us-inbound")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "default"),
        ("name", "x" * 101),
        ("priority", -1),
        ("conditions", [{"field": "favourite_colour", "op": "eq", "value": "red"}]),
        ("conditions", [{"field": "country", "op": "like", "value": "U%"}]),
        ("conditions", [{"field": "country", "op": "in", "value": "US"}]),
        ("conditions", [{"field": "country", "op": "in", "value": []}]),
        ("conditions", [{"field": "score", "op": "gte", "value": "high"}]),
        ("conditions", [{"field": "score", "op": "gte", "value": True}]),
        ("conditions", [{"field": "industry", "op": "exists", "value": "yes"}]),
        ("conditions", [{"field": "title", "op": "eq", "value": "x" * 201}]),
        ("conditions", [{"field": "country", "op": "eq", "value": "US"}] * 21),
        ("team", "no-such-team"),
        ("fallback_team", "no-such-team"),
        ("method", "random"),
        ("sla", {**SLA, "accept_within": "PT0S"}),
        ("sla", {**SLA, "touch_within": "P400D"}),
        ("sla", {**SLA, "accept_within": "fifteen minutes"}),
        ("sla", {**SLA, "clock": "sundial"}),
        ("max_attempts", 0),
    ],
)
async def test_a_routing_rule_that_cannot_be_is_refused_naming_the_field(
    handoff: Handoff, field: str, value: Any
) -> None:
    await handoff.add_reps(ANA, CAI)

    response = await handoff.client.post("/v1/routing-rules", json={**US_RULE, field: value}, headers=handoff.admin)

    assert failing_fields(response) == {field}
    assert (await handoff.client.get("/v1/routing-rules", headers=handoff.admin)).json()["items"] == []


async def test_two_rules_cannot_share_a_priority(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, CAI)
    await handoff.client.post("/v1/routing-rules", json=US_RULE, headers=handoff.admin)
    other = {**US_RULE, "name": "other", "priority": 20}
    await handoff.client.post("/v1/routing-rules", json=other, headers=handoff.admin)
    body = {name: value for name, value in other.items() if name != "name"}

    created = await handoff.client.post(
        "/v1/routing-rules", json={**other, "name": "third", "priority": 10}, headers=handoff.admin
    )
    replaced = await handoff.client.put("/v1/routing-rules/other", json={**body, "priority": 10}, headers=handoff.admin)

    assert "us-inbound" in assert_problem(created, 409)["detail"]
    assert "us-inbound" in assert_problem(replaced, 409)["detail"]
    listed = await handoff.client.get("/v1/routing-rules", headers=handoff.admin)
    assert [(r["name"], r["priority"]) for r in listed.json()["items"]] == [("us-inbound", 10), ("other", 20)]


async def test_leads_matching_a_rule_go_to_its_team_with_its_sla_and_the_rest_by_default(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, CAI)
    await handoff.client.post("/v1/routing-rules", json=US_RULE, headers=handoff.admin)

    await handoff.route(qualified("lead-us", country="US"), qualified("lead-de", country="DE"))

    routed = {a["lead_id"]: a for a in await handoff.assignments()}
    assert (routed["lead-us"]["rep_id"], routed["lead-us"]["rule"], routed["lead-us"]["max_attempts"]) == (
        "rep-cai",
        "us-inbound",
        2,
    )
    assert routed["lead-us"]["accept_due_at"] == (ROUTED_AT + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert (routed["lead-de"]["rep_id"], routed["lead-de"]["rule"]) == ("rep-ana", "default")
    assert routed["lead-us"]["lead"]["score"] == 80 and routed["lead-us"]["lead"]["fit_grade"] == "A"


async def test_a_replaced_rule_routes_the_next_leads_its_new_way(handoff: Handoff) -> None:
    await handoff.add_reps({**ANA, "territories": []}, CAI)
    await handoff.client.post("/v1/routing-rules", json=US_RULE, headers=handoff.admin)
    body = {name: value for name, value in US_RULE.items() if name != "name"}

    replaced = await handoff.client.put(
        "/v1/routing-rules/us-inbound", json={**body, "team": "emea"}, headers=handoff.admin
    )
    await handoff.route(qualified("lead-us", country="US"))

    assert replaced.status_code == 200, replaced.text
    [assignment] = await handoff.assignments()
    assert (assignment["rule"], assignment["rep_id"]) == ("us-inbound", "rep-ana")


# reps


async def test_a_territory_that_is_no_country_is_refused(handoff: Handoff) -> None:
    response = await handoff.client.post("/v1/reps", json={**ANA, "territories": ["DE", "XX"]}, headers=handoff.admin)

    assert failing_fields(response) == {"territories"}


async def test_deleting_a_rep_with_open_assignments_is_refused_saying_how_many(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified(), qualified())

    response = await handoff.client.delete("/v1/reps/rep-ana", headers=handoff.admin)

    body = assert_problem(response, 409)
    assert "2 open assignment" in body["detail"]
    assert (await handoff.client.get("/v1/reps/rep-ana", headers=handoff.admin)).status_code == 200


async def test_deleting_a_rep_with_reassign_routes_their_open_leads_to_others(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA, BEN)
        await handoff.route(qualified("lead-1"), qualified("lead-2"))

        response = await handoff.client.delete("/v1/reps/rep-ana", params={"reassign": "true"}, headers=handoff.admin)

        assert response.status_code == 204, response.text
        after = [(a["lead_id"], a["rep_id"], a["status"], a["attempt"]) for a in await handoff.assignments()]
        kept, counted = await open_counts(handoff)
    assert after == [
        ("lead-1", "rep-ana", "reassigned", 1),
        ("lead-2", "rep-ben", "assigned", 1),
        ("lead-1", "rep-ben", "assigned", 2),
    ]
    assert kept == counted == {"rep-ben": 2}
    assigned = [LeadAssigned.model_validate(e.data) for e in await written_events(settings, LeadAssigned.event_type)]
    assert sorted((a.lead_id, a.rep_id, a.attempt) for a in assigned) == [
        ("lead-1", "rep-ana", 1),
        ("lead-1", "rep-ben", 2),
        ("lead-2", "rep-ben", 1),
    ]


# the fallback queue


async def test_a_lead_nobody_can_take_waits_in_the_fallback_teams_queue_and_says_why(
    settings: HandoffSettings,
) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA, {**CAI, "status": "away"})
        await handoff.client.post("/v1/routing-rules", json=US_RULE, headers=handoff.admin)

        await handoff.route(qualified("lead-us", country="US"))

        [queued] = await handoff.assignments()
        decision = await handoff.client.get(
            f"/v1/assignments/{queued['assignment_id']}/decision", headers=handoff.admin
        )
    assert (queued["status"], queued["rep_id"], queued["team"], queued["accept_due_at"]) == (
        "queued",
        None,
        "emea",
        None,
    )
    assert decision.json()["candidates"] == [
        {"rep_id": "rep-cai", "team": "amer", "outcome": "skipped", "reason": "away"}
    ]
    assert "emea queue" in decision.json()["note"]
    assert await written_events(settings, LeadAssigned.event_type) == []


async def queued_for_emea(handoff: Handoff, *lead_ids: str) -> list[str]:
    """Routes leads that only an emea rep at capacity could take; returns their queued assignments' ids."""
    await handoff.add_reps({**ANA, "capacity": 0}, CAI)
    await handoff.client.post(
        "/v1/routing-rules",
        json={
            **US_RULE,
            "name": "emea",
            "conditions": [{"field": "country", "op": "eq", "value": "DE"}],
            "team": "emea",
        },
        headers=handoff.admin,
    )
    await handoff.route(*(qualified(lead_id) for lead_id in lead_ids))
    return [a["assignment_id"] for a in await handoff.assignments(status="queued")]


async def test_team_leads_list_their_own_queue_only(handoff: Handoff) -> None:
    await queued_for_emea(handoff, "lead-1")
    emea_lead = handoff.token("assignments:read", team="emea")

    own = await handoff.client.get("/v1/assignments", params={"status": "queued", "team": "emea"}, headers=emea_lead)
    other = await handoff.client.get("/v1/assignments", params={"status": "queued", "team": "amer"}, headers=emea_lead)
    amer_view = await handoff.client.get("/v1/assignments", headers=handoff.token("assignments:read", team="amer"))
    rep_view = await handoff.client.get("/v1/assignments", headers=handoff.token("assignments:read", rep_id="rep-ana"))

    assert own.status_code == 200, own.text
    assert [(a["lead_id"], a["status"], a["rep_id"]) for a in own.json()["items"]] == [("lead-1", "queued", None)]
    assert_problem(other, 403)
    assert amer_view.json()["items"] == []
    assert rep_view.json()["items"] == []


async def test_a_team_lead_hands_a_queued_lead_to_a_rep_who_gets_fresh_deadlines(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        [queued] = await queued_for_emea(handoff, "lead-1")
        await handoff.add_reps({**BEN, "status": "away"})  # routing skips Ben, a team lead need not
        emea_lead = handoff.token("assignments:write", team="emea")

        handed = await handoff.client.post(
            f"/v1/assignments/{queued}/events", json={"type": "assigned", "rep_id": "rep-ben"}, headers=emea_lead
        )
        again = await handoff.client.post(
            f"/v1/assignments/{queued}/events", json={"type": "assigned", "rep_id": "rep-ben"}, headers=emea_lead
        )

        assert handed.status_code == 200, handed.text
        shown = handed.json()
        assert (shown["assignment_id"], shown["status"], shown["rep_id"], shown["team"]) == (
            queued,
            "assigned",
            "rep-ben",
            "emea",
        )
        assert shown["accept_due_at"] == (NOW + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
        assert "not queued" in assert_problem(again, 409)["detail"]
        assert await audited(handoff, "assignment") == [("update", queued)]
        kept, counted = await open_counts(handoff)
        assert kept == counted == {"rep-ben": 1}
    assigned = [LeadAssigned.model_validate(e.data) for e in await written_events(settings, LeadAssigned.event_type)]
    assert [(a.lead_id, a.assignment_id, a.rep_id, a.accept_due_at) for a in assigned] == [
        ("lead-1", queued, "rep-ben", NOW + timedelta(hours=2))
    ]


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [
        pytest.param({"rep_id": "rep-ana"}, {"rep_id": "rep-ana"}, 404, id="a-rep"),
        pytest.param({"team": "amer"}, {"rep_id": "rep-cai"}, 404, id="another-teams-lead"),
        pytest.param({}, {"rep_id": "rep-ana"}, 403, id="an-integration-token"),
        pytest.param({"team": "emea"}, {"rep_id": "rep-nobody"}, 422, id="an-unknown-rep"),
        pytest.param({"team": "emea"}, {"rep_id": "rep-cai"}, 422, id="a-rep-of-another-team"),
        pytest.param({"team": "emea"}, {"rep_id": "rep-ana"}, 409, id="a-rep-at-capacity"),
        pytest.param({"team": "emea"}, {}, 422, id="no-rep"),
    ],
)
async def test_a_hand_out_that_may_not_be_changes_nothing(
    handoff: Handoff, who: dict[str, str], body: dict[str, str], status: int
) -> None:
    [queued] = await queued_for_emea(handoff, "lead-1")

    response = await handoff.client.post(
        f"/v1/assignments/{queued}/events",
        json={"type": "assigned", **body},
        headers=handoff.token("assignments:write", **who),
    )

    assert_problem(response, status)
    assert [a["status"] for a in await handoff.assignments()] == ["queued"]


async def test_queued_leads_drain_oldest_first_when_a_rep_gets_room(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        queued = await queued_for_emea(handoff, "lead-old", "lead-new")

        patched = await handoff.client.patch("/v1/reps/rep-ana", json={"capacity": 1}, headers=handoff.admin)

        assert patched.status_code == 200, patched.text
        after = {a["lead_id"]: (a["assignment_id"], a["rep_id"], a["status"]) for a in await handoff.assignments()}
        kept, counted = await open_counts(handoff)
    assert after == {"lead-old": (queued[0], "rep-ana", "assigned"), "lead-new": (queued[1], None, "queued")}
    assert kept == counted == {"rep-ana": 1}
    assigned = [LeadAssigned.model_validate(e.data) for e in await written_events(settings, LeadAssigned.event_type)]
    assert [(a.lead_id, a.assignment_id) for a in assigned] == [("lead-old", queued[0])]


async def test_a_queued_lead_does_not_drain_to_a_rep_who_had_it(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified("lead-1"))
    await handoff.client.post("/v1/reps", json=BEN, headers=handoff.admin)
    await handoff.client.patch("/v1/reps/rep-ben", json={"status": "away"}, headers=handoff.admin)

    # Ana is deleted with her lead routed again: only Ben is left, and he is away, so the lead waits.
    deleted = await handoff.client.delete("/v1/reps/rep-ana", params={"reassign": "true"}, headers=handoff.admin)
    await handoff.add_reps({**ANA, "name": "Ana again"})
    after_ana_returns = [(a["rep_id"], a["status"]) for a in await handoff.assignments()]
    await handoff.client.patch("/v1/reps/rep-ben", json={"status": "available"}, headers=handoff.admin)

    assert deleted.status_code == 204, deleted.text
    assert after_ana_returns == [("rep-ana", "reassigned"), (None, "queued")]
    assert [(a["rep_id"], a["status"]) for a in await handoff.assignments()] == [
        ("rep-ana", "reassigned"),
        ("rep-ben", "assigned"),
    ]


# what reps and team leads see


async def test_a_decision_names_only_the_callers_team_and_is_hidden_from_other_reps(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, {**BEN, "status": "away"}, {**CAI, "status": "away"})
    await handoff.route(qualified("lead-1"))
    [assignment] = await handoff.assignments()
    path = f"/v1/assignments/{assignment['assignment_id']}/decision"

    as_admin = (await handoff.client.get(path, headers=handoff.admin)).json()
    as_ana = (await handoff.client.get(path, headers=handoff.token("assignments:read", rep_id="rep-ana"))).json()
    as_team_lead = (await handoff.client.get(path, headers=handoff.token("assignments:read", team="emea"))).json()
    as_ben = await handoff.client.get(path, headers=handoff.token("assignments:read", rep_id="rep-ben"))
    as_amer_lead = await handoff.client.get(path, headers=handoff.token("assignments:read", team="amer"))

    assert sorted((c["rep_id"], c["outcome"], c["reason"]) for c in as_admin["candidates"]) == [
        ("rep-ana", "chosen", "next in rotation (first)"),
        ("rep-ben", "skipped", "away"),
        ("rep-cai", "skipped", "away"),
    ]
    assert (as_admin["rule"], as_admin["method"], as_admin["chosen"]) == ("default", "round_robin", "rep-ana")
    for seen in (as_ana, as_team_lead):
        assert sorted(str(c["rep_id"]) for c in seen["candidates"]) == ["None", "rep-ana", "rep-ben"]
        [hidden] = [c for c in seen["candidates"] if c["rep_id"] is None]
        assert hidden["team"] is None and "another team's rep" in hidden["reason"]
        assert "rep-cai" not in str(seen)
    assert_problem(as_ben, 404)
    assert_problem(as_amer_lead, 404)


async def test_at_risk_shows_once_80_percent_of_a_running_clock_has_passed(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    # The default rule: two hours to accept, at risk after 96 minutes. Now is 100 minutes after one lead
    # was routed and 10 after the other.
    await handoff.route(qualified("lead-early"), at=NOW - timedelta(minutes=100))
    await handoff.route(qualified("lead-late"), at=NOW - timedelta(minutes=10))

    shown = {a["lead_id"]: a["at_risk"] for a in await handoff.assignments()}

    assert shown == {"lead-early": True, "lead-late": False}


# rejections


async def test_a_rejection_without_a_known_reason_is_refused_naming_reason(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified())
    [assignment] = await handoff.assignments()

    missing = await handoff.report(assignment["assignment_id"], {"type": "rejected"})
    unknown = await handoff.report(assignment["assignment_id"], {"type": "rejected", "reason": "just because"})

    assert failing_fields(missing) == {"reason"}
    assert failing_fields(unknown) == {"reason"}
    assert [a["status"] for a in await handoff.assignments()] == ["assigned"]


async def test_a_rejection_recycles_the_lead_with_its_reason(tmp_path: Path) -> None:
    settings = HandoffSettings(data_dir=tmp_path, reject_reasons=["wrong_region", "student"], **LONG_SLA)
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA)
        await handoff.route(qualified("lead-1"))
        [assignment] = await handoff.assignments()

        answer = await handoff.report(assignment["assignment_id"], {"type": "rejected", "reason": "student"})

        assert answer.status_code == 200, answer.text
    recycled = [LeadRecycled.model_validate(e.data) for e in await written_events(settings, LeadRecycled.event_type)]
    assert [(r.lead_id, r.reason) for r in recycled] == [("lead-1", "student")]
