"""Who may call each handoff endpoint: every route of the app × every kind of caller, and never a leak to those refused.

The table below names every route the app serves; a route added without an entry fails
``test_every_route_of_the_app_has_an_entry_in_the_table``, so no endpoint goes unchecked.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from baton.events import new_id
from baton_handoff.app import create_app
from baton_handoff.audit import AuditEntry
from baton_handoff.models import Assignment, Rep, RepWorkload
from baton_handoff.settings import HandoffSettings
from tests.unit.test_handoff_api import NOW, Handoff, running_handoff

# The callers. rep-ana and rep-ben are both in team emea; rep-cy is in amer. All are away, so that
# queued leads wait for a hand-out instead of being drained to them.
ANONYMOUS = "no token"
WRONG_SCOPE = "wrong scope"
REP_A = "rep A (rep-ana)"
REP_B = "rep B (rep-ben, the owner)"
LEAD_EMEA = "team lead of emea (the owner's team)"
LEAD_AMER = "team lead of amer (another team)"
INTEGRATION = "integration (assignments:read, no rep or team)"
ADMIN = "admin"
PRINCIPALS = (ANONYMOUS, WRONG_SCOPE, REP_A, REP_B, LEAD_EMEA, LEAD_AMER, INTEGRATION, ADMIN)

REPS = [
    {"rep_id": "rep-ana", "name": "Ana", "email": "ana@reps.example", "status": "away", "team": "emea", "capacity": 50},
    {"rep_id": "rep-ben", "name": "Ben", "email": "ben@reps.example", "status": "away", "team": "emea", "capacity": 50},
    {"rep_id": "rep-cy", "name": "Cy", "email": "cy@reps.example", "status": "away", "team": "amer", "capacity": 50},
]
BENS_LEAD = {"email": "ben.lead@secret.example", "company": "Ben Secret GmbH", "country": "DE"}
QUEUED_LEAD = {"email": "queued.lead@secret.example", "company": "Queued Secret AG", "country": "DE"}
ACCOUNT = {"domain": "secret-account.example", "name": "Ben Secret Account", "owner_rep_id": "rep-ben"}
RULE_NAME = "emea-secret-rule"
RULE: dict[str, Any] = {
    "name": RULE_NAME,
    "priority": 10,
    "conditions": [{"field": "country", "op": "eq", "value": "DE"}],
    "team": "emea",
    "sla": {"accept_within": "PT15M", "touch_within": "PT4H"},
}
WEBHOOK_URL = "https://crm.example/emea-secret-hook"
# What a caller who is refused must never read, whatever the route answers.
SECRETS: tuple[str, ...] = (
    BENS_LEAD["email"],
    BENS_LEAD["company"],
    QUEUED_LEAD["email"],
    "ben@reps.example",
    "cy@reps.example",
    ACCOUNT["name"],
    RULE_NAME,
    "emea-secret-hook",
    "lead-ben-",
    "lead-queued-",
)


@dataclass
class Request:
    method: str
    url: str
    json: Any = None


@dataclass
class World:
    """A running handoff holding the data the callers reach for."""

    handoff: Handoff
    headers: dict[str, dict[str, str]]
    names: count[int] = field(default_factory=count)

    def fresh(self, prefix: str) -> str:
        return f"{prefix}-{next(self.names)}"

    async def admin(self, method: str, url: str, json: Any = None) -> httpx.Response:
        answer = await self.handoff.client.request(method, url, json=json, headers=self.headers[ADMIN])
        assert answer.is_success, answer.text
        return answer

    async def snapshot(self) -> tuple[Any, ...]:
        """What a refused request must leave as it was: assignments, reps, and the audit log of every admin change."""
        async with self.handoff.runtime.sessions() as session:
            assignments = (await session.execute(select(Assignment.id, Assignment.status, Assignment.rep_id))).all()
            reps = (await session.execute(select(Rep.rep_id, Rep.capacity, Rep.team))).all()
            changes = await session.scalar(select(func.count()).select_from(AuditEntry))
        return sorted(assignments), sorted(reps), changes

    async def assignment(self, *, rep_id: str | None, team: str, lead: dict[str, Any]) -> str:
        """Inserts an assignment as routing would have made it: assigned to a rep, or queued for a team."""
        assignment_id = new_id()
        kind = "ben" if rep_id == "rep-ben" else "queued"
        async with self.handoff.runtime.sessions() as session, session.begin():
            session.add(
                Assignment(
                    id=assignment_id,
                    lead_id=f"lead-{kind}-{new_id()}",
                    rep_id=rep_id,
                    team=team,
                    rule="emea",
                    status="assigned" if rep_id else "queued",
                    lead=lead,
                    decision={
                        "rule": "emea",
                        "method": "round_robin",
                        "team": team,
                        "matched": [{"rule": "emea", "matched": True, "why": "country eq DE holds"}],
                        "candidates": [
                            {"rep_id": "rep-ben", "team": "emea", "outcome": "chosen", "reason": "next in rotation"},
                            {"rep_id": "rep-cy", "team": "amer", "outcome": "skipped", "reason": "at capacity (5/5)"},
                        ],
                        "chosen": rep_id,
                        "decided_at": (NOW - timedelta(hours=1)).isoformat(),
                    },
                    accept_due_at=NOW + timedelta(hours=1) if rep_id else None,
                    touch_due_at=NOW + timedelta(hours=4) if rep_id else None,
                    sla_clock="wall_clock",
                    created_at=NOW - timedelta(hours=1),
                    updated_at=NOW - timedelta(hours=1),
                )
            )
            if rep_id is not None:
                workload = await session.get(RepWorkload, rep_id)
                assert workload is not None
                workload.open_assignments += 1
        return assignment_id

    async def bens_assignment(self) -> str:
        return await self.assignment(rep_id="rep-ben", team="emea", lead=BENS_LEAD)

    async def queued_for_emea(self) -> str:
        return await self.assignment(rep_id=None, team="emea", lead=QUEUED_LEAD)


Arrange = Callable[[World], Awaitable[Request]]


@dataclass(frozen=True)
class Case:
    """One request aimed at data a caller may or may not reach, and which callers may make it.

    ``allowed`` maps a caller to the statuses it may get; ``hidden`` callers get a success that must
    show none of the secrets; every other caller is refused (401 without a token, else 403 or 404).
    """

    name: str
    arrange: Arrange
    allowed: Mapping[str, tuple[int, ...]]
    hidden: frozenset[str] = frozenset()


def only_admin(*statuses: int) -> Mapping[str, tuple[int, ...]]:
    return {ADMIN: statuses}


def fixed(method: str, url: str, json: Any = None) -> Arrange:
    async def arrange(world: World) -> Request:
        return Request(method, url, json)

    return arrange


async def new_rep(world: World) -> Request:
    return Request("POST", "/v1/reps", {"rep_id": world.fresh("rep-new"), "name": "New", "team": "emea"})


async def rep_to_delete(world: World) -> Request:
    rep_id = world.fresh("rep-leaving")
    await world.admin("POST", "/v1/reps", {"rep_id": rep_id, "name": "Leaving", "team": "emea"})
    return Request("DELETE", f"/v1/reps/{rep_id}")


async def new_account(world: World) -> Request:
    return Request("POST", "/v1/accounts", {**ACCOUNT, "domain": f"{world.fresh('new')}.example", "name": "New"})


async def account_to_delete(world: World) -> Request:
    domain = f"{world.fresh('leaving')}.example"
    await world.admin("POST", "/v1/accounts", {**ACCOUNT, "domain": domain, "name": "Leaving"})
    return Request("DELETE", f"/v1/accounts/{domain}")


async def new_rule(world: World) -> Request:
    return Request(
        "POST", "/v1/routing-rules", {**RULE, "name": world.fresh("rule"), "priority": 100 + next(world.names)}
    )


async def rule_to_delete(world: World) -> Request:
    name = world.fresh("rule-leaving")
    await world.admin("POST", "/v1/routing-rules", {**RULE, "name": name, "priority": 100 + next(world.names)})
    return Request("DELETE", f"/v1/routing-rules/{name}")


async def replaced_rule(world: World) -> Request:
    body = {key: value for key, value in RULE.items() if key != "name"}
    return Request("PUT", f"/v1/routing-rules/{RULE['name']}", {**body, "priority": 100 + next(world.names)})


async def webhook_to_delete(world: World) -> Request:
    await world.admin("PUT", "/v1/webhooks/amer", {"url": "https://crm.example/amer"})
    return Request("DELETE", "/v1/webhooks/amer")


async def bens_assignment_at(world: World, suffix: str = "") -> Request:
    return Request("GET", f"/v1/assignments/{await world.bens_assignment()}{suffix}")


async def bens_decision(world: World) -> Request:
    return await bens_assignment_at(world, "/decision")


async def accept_bens_assignment(world: World) -> Request:
    return Request("POST", f"/v1/assignments/{await world.bens_assignment()}/events", {"type": "accepted"})


async def hand_out_emeas_queued_lead(world: World) -> Request:
    assignment_id = await world.queued_for_emea()
    return Request("POST", f"/v1/assignments/{assignment_id}/events", {"type": "assigned", "rep_id": "rep-ben"})


async def bens_assignments(world: World) -> Request:
    await world.bens_assignment()
    return Request("GET", "/v1/assignments?team=emea&rep_id=rep-ben")


async def emeas_queue(world: World) -> Request:
    await world.queued_for_emea()
    return Request("GET", "/v1/assignments?status=queued&team=emea")


async def everything_visible(world: World) -> Request:
    await world.bens_assignment()
    await world.queued_for_emea()
    return Request("GET", "/v1/assignments")


EVERYONE: Mapping[str, tuple[int, ...]] = dict.fromkeys(PRINCIPALS, (200,))
OWNERS: Mapping[str, tuple[int, ...]] = {ADMIN: (200,), INTEGRATION: (200,), REP_B: (200,), LEAD_EMEA: (200,)}

TABLE: dict[tuple[str, str], list[Case]] = {
    ("GET", "/healthz"): [Case("alive", fixed("GET", "/healthz"), EVERYONE)],
    ("GET", "/readyz"): [Case("ready", fixed("GET", "/readyz"), EVERYONE)],
    ("GET", "/metrics"): [Case("metrics", fixed("GET", "/metrics"), EVERYONE)],
    # reps
    ("POST", "/v1/reps"): [Case("add a rep", new_rep, only_admin(201))],
    ("GET", "/v1/reps"): [Case("list reps", fixed("GET", "/v1/reps"), only_admin(200))],
    ("GET", "/v1/reps/{rep_id}"): [Case("read Ben", fixed("GET", "/v1/reps/rep-ben"), only_admin(200))],
    ("PATCH", "/v1/reps/{rep_id}"): [
        Case("change Ben", fixed("PATCH", "/v1/reps/rep-ben", {"capacity": 49}), only_admin(200))
    ],
    ("DELETE", "/v1/reps/{rep_id}"): [Case("remove a rep", rep_to_delete, only_admin(204))],
    # accounts
    ("POST", "/v1/accounts"): [Case("add an account", new_account, only_admin(201))],
    ("GET", "/v1/accounts"): [Case("list accounts", fixed("GET", "/v1/accounts"), only_admin(200))],
    ("GET", "/v1/accounts/{domain}"): [
        Case("read an account", fixed("GET", f"/v1/accounts/{ACCOUNT['domain']}"), only_admin(200))
    ],
    ("PATCH", "/v1/accounts/{domain}"): [
        Case(
            "change an account",
            fixed("PATCH", f"/v1/accounts/{ACCOUNT['domain']}", {"owner_rep_id": "rep-ben"}),
            only_admin(200),
        )
    ],
    ("DELETE", "/v1/accounts/{domain}"): [Case("remove an account", account_to_delete, only_admin(204))],
    # routing rules
    ("POST", "/v1/routing-rules"): [Case("add a rule", new_rule, only_admin(201))],
    ("GET", "/v1/routing-rules"): [Case("list rules", fixed("GET", "/v1/routing-rules"), only_admin(200))],
    ("GET", "/v1/routing-rules/{name}"): [
        Case("read a rule", fixed("GET", f"/v1/routing-rules/{RULE['name']}"), only_admin(200))
    ],
    ("PUT", "/v1/routing-rules/{name}"): [Case("replace a rule", replaced_rule, only_admin(200))],
    ("DELETE", "/v1/routing-rules/{name}"): [Case("remove a rule", rule_to_delete, only_admin(204))],
    ("POST", "/v1/routing-rules:simulate"): [
        Case("simulate", fixed("POST", "/v1/routing-rules:simulate", {"rules": [RULE], "days": 7}), only_admin(200))
    ],
    # audit
    ("GET", "/v1/audit"): [Case("read the audit log", fixed("GET", "/v1/audit"), only_admin(200))],
    # webhooks
    ("PUT", "/v1/webhooks/{team}"): [
        Case("replace emea's webhook", fixed("PUT", "/v1/webhooks/emea", {"url": WEBHOOK_URL}), only_admin(200))
    ],
    ("GET", "/v1/webhooks/{team}"): [Case("read emea's webhook", fixed("GET", "/v1/webhooks/emea"), only_admin(200))],
    ("POST", "/v1/webhooks/{team}:rotate-secret"): [
        Case("rotate emea's secret", fixed("POST", "/v1/webhooks/emea:rotate-secret"), only_admin(200))
    ],
    ("DELETE", "/v1/webhooks/{team}"): [Case("remove amer's webhook", webhook_to_delete, only_admin(204))],
    ("GET", "/v1/webhooks/{team}/deliveries"): [
        Case(
            "read emea's deliveries",
            fixed("GET", "/v1/webhooks/emea/deliveries"),
            {ADMIN: (200,), LEAD_EMEA: (200,)},
        )
    ],
    # assignments
    ("GET", "/v1/assignments"): [
        Case("list Ben's assignments", bens_assignments, OWNERS),
        Case(
            "list emea's queue",
            emeas_queue,
            {ADMIN: (200,), INTEGRATION: (200,), LEAD_EMEA: (200,)},
            hidden=frozenset({REP_A, REP_B}),
        ),
        Case(
            "list without filters",
            everything_visible,
            {ADMIN: (200,), INTEGRATION: (200,), REP_B: (200,), LEAD_EMEA: (200,)},
            hidden=frozenset({REP_A, LEAD_AMER}),
        ),
    ],
    ("GET", "/v1/assignments/{assignment_id}"): [Case("read Ben's assignment", bens_assignment_at, OWNERS)],
    ("GET", "/v1/assignments/{assignment_id}/decision"): [Case("read Ben's decision", bens_decision, OWNERS)],
    ("POST", "/v1/assignments/{assignment_id}/events"): [
        Case("accept Ben's assignment", accept_bens_assignment, {ADMIN: (200,), REP_B: (200,), LEAD_EMEA: (200,)}),
        Case("hand out emea's queued lead", hand_out_emeas_queued_lead, {ADMIN: (200,), LEAD_EMEA: (200,)}),
    ],
}

# Served by FastAPI itself, the same for everyone, and without data.
DOCUMENTATION = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def served_routes(data_dir: Path) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, through included routers too."""
    app = create_app(HandoffSettings(data_dir=data_dir))
    served: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        assert route.path is not None and route.methods, f"a route the table cannot check: {route}"
        if route.path not in DOCUMENTATION:
            served.update((method, route.path) for method in route.methods)
    return served


def test_every_route_of_the_app_has_an_entry_in_the_table(tmp_path: Path) -> None:
    served = served_routes(tmp_path)

    assert sorted(served - TABLE.keys()) == [], "routes served with no entry in the authorization table"
    assert sorted(TABLE.keys() - served) == [], "entries in the authorization table for routes no longer served"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with running_handoff(HandoffSettings(data_dir=tmp_path)) as handoff:
        headers = {
            ANONYMOUS: {},
            WRONG_SCOPE: handoff.token("leads:read", "leads:write", "metrics:read"),
            REP_A: handoff.token("assignments:read", "assignments:write", rep_id="rep-ana"),
            REP_B: handoff.token("assignments:read", "assignments:write", rep_id="rep-ben"),
            LEAD_EMEA: handoff.token("assignments:read", "assignments:write", team="emea"),
            LEAD_AMER: handoff.token("assignments:read", "assignments:write", team="amer"),
            INTEGRATION: handoff.token("assignments:read"),
            ADMIN: handoff.admin,
        }
        world = World(handoff=handoff, headers=headers)
        for rep in REPS:
            await world.admin("POST", "/v1/reps", rep)
        await world.admin("POST", "/v1/accounts", ACCOUNT)
        await world.admin("POST", "/v1/routing-rules", RULE)
        await world.admin("PUT", "/v1/webhooks/emea", {"url": WEBHOOK_URL})
        yield world


def refusal(principal: str, answer: httpx.Response) -> str | None:
    """What is wrong with how a refused caller was answered, if anything."""
    expected = (401,) if principal == ANONYMOUS else (403, 404)
    if answer.status_code not in expected:
        return f"answered {answer.status_code}, expected one of {expected}: {answer.text[:300]}"
    if answer.headers.get("content-type") != "application/problem+json":
        return f"answered {answer.headers.get('content-type')}, not problem+json"
    return leak(answer)


def leak(answer: httpx.Response) -> str | None:
    leaked = [secret for secret in SECRETS if secret in answer.text]
    return f"leaked {leaked} in {answer.text[:300]}" if leaked else None


@pytest.mark.parametrize(
    ("route", "case"),
    [(route, case) for route, cases in TABLE.items() for case in cases],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else value.name,
)
async def test_each_caller_gets_what_the_table_allows_and_the_refused_see_no_data(
    world: World, route: tuple[str, str], case: Case
) -> None:
    wrong: dict[str, str] = {}
    for principal in PRINCIPALS:
        request = await case.arrange(world)
        assert request.method == route[0]
        before = await world.snapshot()
        answer = await world.handoff.client.request(
            request.method, request.url, json=request.json, headers=world.headers[principal]
        )
        if principal not in case.allowed and await world.snapshot() != before:
            wrong[principal] = f"was refused with {answer.status_code} but changed what handoff holds"
        elif principal in case.allowed:
            if answer.status_code not in case.allowed[principal]:
                wrong[principal] = (
                    f"answered {answer.status_code}, expected {case.allowed[principal]}: {answer.text[:300]}"
                )
        elif principal in case.hidden:
            if not answer.is_success:
                wrong[principal] = (
                    f"answered {answer.status_code}, expected a success showing nothing: {answer.text[:300]}"
                )
            elif problem := leak(answer):
                wrong[principal] = problem
        elif problem := refusal(principal, answer):
            wrong[principal] = problem

    assert wrong == {}


async def test_the_owners_see_the_decision_without_naming_reps_of_other_teams(world: World) -> None:
    assignment_id = await world.bens_assignment()

    seen = {
        principal: await world.handoff.client.get(
            f"/v1/assignments/{assignment_id}/decision", headers=world.headers[principal]
        )
        for principal in (REP_B, LEAD_EMEA, ADMIN)
    }

    assert {principal: answer.status_code for principal, answer in seen.items()} == dict.fromkeys(seen, 200)
    assert "rep-cy" not in seen[REP_B].text and "rep-cy" not in seen[LEAD_EMEA].text
    assert "rep-cy" in seen[ADMIN].text
