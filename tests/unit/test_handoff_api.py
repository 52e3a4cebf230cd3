"""handoff's HTTP API and routing, driven in-process on SQLite and the embedded log in tmp_path.

The helpers here also drive the same app on PostgreSQL in tests/integration/test_handoff_postgresql.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, func, select, text
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.exc import IntegrityError

from baton.auth import issue_token
from baton.bus import make_bus
from baton.consumer import Incoming, begin_batch
from baton.db import create_engine
from baton.events import LEADS_HANDOFF, CloudEvent, EventData, LeadAssigned, LeadQualified, LeadStatusChanged, new_id
from baton.outbox import OutboxEntry, decode_record
from baton.runtime import ServiceRuntime
from baton_handoff.app import create_app
from baton_handoff.domain import OPEN_STATUSES
from baton_handoff.models import Assignment, RepWorkload
from baton_handoff.settings import HandoffSettings
from tests.unit.conftest import assert_problem

NOW = datetime(2030, 6, 3, 9, 0, tzinfo=UTC)
# Half an hour before the clock: deadlines of the default SLA (an hour) lie ahead, and the SLA
# scheduler leaves them alone.
ROUTED_AT = NOW - timedelta(minutes=30)
PROBLEM_JSON = "application/problem+json"
ANA = {"rep_id": "rep-ana", "name": "Ana", "team": "emea", "territories": ["DE"], "capacity": 20}
# Deadlines far beyond the tests' clock, so the SLA scheduler leaves the tests' assignments alone.
LONG_SLA: dict[str, Any] = {"accept_within": timedelta(days=30), "touch_within": timedelta(days=60)}


@dataclass
class Handoff:
    """A running handoff app: its HTTP client, and its event handlers as its consumer calls them."""

    client: httpx.AsyncClient
    runtime: ServiceRuntime

    def token(self, *scopes: str, rep_id: str | None = None, team: str | None = None) -> dict[str, str]:
        """An Authorization header with a token this service trusts."""
        token = issue_token(self.runtime.signing_secret, scopes=list(scopes), rep_id=rep_id, team=team)
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.token("admin")

    async def add_reps(self, *reps: dict[str, Any]) -> None:
        for rep in reps:
            created = await self.client.post("/v1/reps", json=rep, headers=self.admin)
            assert created.status_code == 201, created.text

    async def route(self, *leads: LeadQualified, at: datetime = ROUTED_AT) -> None:
        """Applies lead.qualified events one after another in one transaction, as the consumer applies a batch."""
        await self.consume(*leads, source="/baton/scoring", at=at)

    async def consume(self, *events: EventData, source: str, at: datetime) -> None:
        """Applies events one after another in one transaction, as the handoff consumer applies a batch."""
        table = self.runtime.spec.consumers["handoff"]
        async with self.runtime.sessions() as session, session.begin():
            begin_batch(session, (data.lead_id for data in events))
            for data in events:
                await table[data.event_type](Incoming(id=new_id(), source=source, time=at, data=data, now=at), session)

    async def assignments(self, **params: str) -> list[dict[str, Any]]:
        """Every assignment the admin sees with these filters, across pages."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = await self.client.get(
                "/v1/assignments", params={**params, **({"cursor": cursor} if cursor else {})}, headers=self.admin
            )
            assert page.status_code == 200, page.text
            items.extend(page.json()["items"])
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return items

    async def report(self, assignment_id: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(
            f"/v1/assignments/{assignment_id}/events", json=body, headers=self.token("assignments:write")
        )


@asynccontextmanager
async def running_handoff(settings: HandoffSettings) -> AsyncIterator[Handoff]:
    """handoff with its lifespan started (migrations, relay, consumer) and a client on its ASGI app."""
    app = create_app(settings, clock=lambda: NOW)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://handoff") as client,
    ):
        yield Handoff(client=client, runtime=app.state.runtime)


async def written_events(settings: HandoffSettings, event_type: str) -> list[CloudEvent]:
    """Every event of a type a stopped handoff wrote, once each, whether its relay published it or not."""
    engine = create_engine(settings.database_url_for("baton_handoff"))
    try:
        async with engine.connect() as conn:
            waiting = (await conn.scalars(select(OutboxEntry.payload))).all()
    finally:
        await engine.dispose()
    bus = make_bus(settings)
    await bus.start()
    try:
        published = await bus.read(LEADS_HANDOFF)
    finally:
        await bus.stop()
    events: dict[str, CloudEvent] = {}
    for event in [*map(CloudEvent.model_validate_json, waiting), *map(decode_record, published)]:
        events.setdefault(event.id, event)
    return [event for event in events.values() if event.type == event_type]


async def open_counts(handoff: Handoff) -> tuple[dict[str, int], dict[str, int]]:
    """Each rep's open-assignment count as kept, and as counted from the assignments themselves."""
    async with handoff.runtime.sessions() as session:
        kept = dict((await session.execute(select(RepWorkload.rep_id, RepWorkload.open_assignments))).all())
        counted = dict(
            (
                await session.execute(
                    select(Assignment.rep_id, func.count())
                    .where(Assignment.status.in_(OPEN_STATUSES), Assignment.rep_id.is_not(None))
                    .group_by(Assignment.rep_id)
                )
            ).all()
        )
    return {rep: n for rep, n in kept.items() if n}, counted


async def migrate_to(settings: HandoffSettings, revision: str) -> None:
    """Brings handoff's database to one revision of its migrations, as an older release left it."""
    config = Config()
    config.set_main_option("script_location", "baton_handoff:migrations")

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    engine = create_engine(settings.database_url_for("baton_handoff"))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(upgrade)
            await conn.commit()
    finally:
        await engine.dispose()


async def insert_assignments(settings: HandoffSettings, rows: Sequence[tuple[str, str, str]]) -> None:
    """Writes (lead_id, rep_id, status) assignments straight into the table, oldest first."""
    engine = create_engine(settings.database_url_for("baton_handoff"))
    try:
        async with engine.begin() as conn:
            for lead_id, rep_id, status in rows:
                await conn.execute(
                    text(
                        "INSERT INTO assignments (id, lead_id, rep_id, rule, attempt, status, lead, decision, "
                        "accept_due_at, touch_due_at, created_at, updated_at) VALUES (:id, :lead_id, :rep_id, "
                        "'default', 1, :status, '{}', '{}', :due, :due, :now, :now)"
                    ),
                    {
                        "id": new_id(),
                        "lead_id": lead_id,
                        "rep_id": rep_id,
                        "status": status,
                        "now": ROUTED_AT,
                        "due": ROUTED_AT + LONG_SLA["accept_within"],
                    },
                )
    finally:
        await engine.dispose()


async def upgrading_closes_duplicate_open_assignments_and_counts_open_ones(settings: HandoffSettings) -> None:
    """A database 0001 left with a lead assigned twice upgrades: the older stays open, counts are right."""
    await migrate_to(settings, "0001")
    await insert_assignments(
        settings,
        [
            ("lead-1", "rep-ana", "assigned"),
            ("lead-1", "rep-ben", "accepted"),
            ("lead-2", "rep-ana", "rejected"),
            ("lead-2", "rep-ben", "contacted"),
            ("lead-3", "rep-ana", "qualified"),
            ("lead-3", "rep-ana", "assigned"),
            ("lead-3", "rep-ben", "won"),
        ],
    )

    async with running_handoff(settings) as handoff:
        after = [(a["lead_id"], a["rep_id"], a["status"]) for a in await handoff.assignments()]
        kept, counted = await open_counts(handoff)

    assert after == [
        ("lead-1", "rep-ana", "assigned"),
        ("lead-1", "rep-ben", "reassigned"),
        ("lead-2", "rep-ana", "rejected"),
        ("lead-2", "rep-ben", "contacted"),
        ("lead-3", "rep-ana", "qualified"),
        ("lead-3", "rep-ana", "reassigned"),
        ("lead-3", "rep-ben", "won"),
    ]
    assert kept == counted == {"rep-ana": 2, "rep-ben": 1}


def qualified(lead_id: str | None = None, **lead: Any) -> LeadQualified:
    return LeadQualified.model_validate(
        {
            "lead_id": lead_id or new_id(),
            "score": 80,
            "fit_grade": "A",
            "reason": "threshold",
            "lead": {"email": "jane@example.com", "country": "DE", "source": "webinar", **lead},
        }
    )


def failing_fields(response: httpx.Response) -> set[str]:
    body = assert_problem(response, 422)
    return {".".join(str(part) for part in error["loc"][1:2]) for error in body["errors"]}


async def report_all_at_once(handoff: Handoff, reports: Sequence[tuple[str, str]]) -> list[httpx.Response]:
    """Sends every (assignment_id, type) report concurrently."""
    return list(await asyncio.gather(*(handoff.report(a, {"type": t, "reason": "not_a_fit"}) for a, t in reports)))


async def one_report_wins_per_assignment(handoff: Handoff, pairs: int) -> list[str]:
    """Routes ``pairs`` leads, then sends accepted and rejected to each at the same moment.

    Returns:
        The ids of the assignments, after asserting that one report of each pair answered 200 and
        the other 409, and that the assignment holds the winner's status.
    """
    await handoff.route(*(qualified() for _ in range(pairs)))
    ids = [a["assignment_id"] for a in await handoff.assignments()]
    assert len(ids) == pairs
    reports = [(assignment_id, kind) for assignment_id in ids for kind in ("accepted", "rejected")]

    answers = await report_all_at_once(handoff, reports)

    winners: dict[str, str] = {}
    for (assignment_id, kind), answer in zip(reports, answers, strict=True):
        assert answer.status_code in (200, 409), answer.text
        if answer.status_code == 200:
            assert assignment_id not in winners, f"both reports on {assignment_id} succeeded"
            winners[assignment_id] = kind
            assert answer.json()["status"] == kind
    assert set(winners) == set(ids)
    assert Counter(answer.status_code for answer in answers) == {200: pairs, 409: pairs}
    final = {a["assignment_id"]: a["status"] for a in await handoff.assignments()}
    assert final == winners
    return ids


def assert_one_status_change_each(events: list[CloudEvent], assignment_ids: Sequence[str]) -> None:
    changed = Counter(LeadStatusChanged.model_validate(e.data).assignment_id for e in events)
    assert changed == dict.fromkeys(assignment_ids, 1)


@pytest.fixture
def settings(tmp_path: Path) -> HandoffSettings:
    return HandoffSettings(data_dir=tmp_path, **LONG_SLA)


@pytest.fixture
async def handoff(settings: HandoffSettings) -> AsyncIterator[Handoff]:
    async with running_handoff(settings) as service:
        yield service


# reps


async def test_creating_a_rep_needs_an_admin_token(handoff: Handoff) -> None:
    response = await handoff.client.post("/v1/reps", json=ANA, headers=handoff.token("assignments:read"))

    assert_problem(response, 403)


async def test_admin_creates_a_rep(handoff: Handoff) -> None:
    created = await handoff.client.post("/v1/reps", json=ANA, headers=handoff.admin)
    fetched = await handoff.client.get("/v1/reps/rep-ana", headers=handoff.admin)

    assert created.status_code == 201, created.text
    assert fetched.status_code == 200
    assert fetched.json() == {
        **ANA,
        "email": None,
        "segments": [],
        "weight": 1,
        "timezone": "UTC",
        "working_hours": None,
        "status": "available",
        "ooo_until": None,
        "created_at": NOW.isoformat().replace("+00:00", "Z"),
        "updated_at": NOW.isoformat().replace("+00:00", "Z"),
    }


async def test_creating_the_same_rep_twice_is_a_conflict(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)

    response = await handoff.client.post("/v1/reps", json={**ANA, "name": "Another Ana"}, headers=handoff.admin)

    body = assert_problem(response, 409)
    assert "rep-ana" in body["detail"]
    assert (await handoff.client.get("/v1/reps/rep-ana", headers=handoff.admin)).json()["name"] == "Ana"


async def test_rep_keeps_its_zone_hours_territories_and_contact_as_given(handoff: Handoff) -> None:
    rep = {
        **ANA,
        "email": "ana@example.com",
        "territories": ["DE", "AT", "CH"],
        "segments": ["mid", "ent"],
        "timezone": "Europe/Berlin",
        "working_hours": {"mon": [["09:00", "12:30"], ["13:30", "17:30"]], "fri": [["09:00", "24:00"]]},
        "ooo_until": "2030-07-01T08:00:00+02:00",
    }

    created = await handoff.client.post("/v1/reps", json=rep, headers=handoff.admin)
    listed = await handoff.client.get("/v1/reps", headers=handoff.admin)

    assert created.status_code == 201, created.text
    [kept] = listed.json()["items"]
    assert {name: kept[name] for name in rep} == {**rep, "ooo_until": "2030-07-01T06:00:00Z"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("email", "not-an-address"),
        ("email", "ana@localhost"),
        ("email", "ana smith@example.com"),
        ("team", ""),
        ("territories", ["de"]),
        ("territories", ["DEU"]),
        ("territories", ["D1"]),
        ("territories", ["DE"] * 251),
        ("segments", ["smb", "mid", "ent", "smb"]),
        ("segments", ["enterprise"]),
        ("weight", 0),
        ("capacity", -1),
        ("timezone", "Mars/Olympus_Mons"),
        ("timezone", "localtime"),
        ("timezone", "../../etc/passwd"),
        ("working_hours", {"monday": [["09:00", "17:00"]]}),
        ("working_hours", {"mon": [["9:00", "17:00"]]}),
        ("working_hours", {"mon": [["09:00", "25:00"]]}),
        ("working_hours", {"mon": [["17:00", "09:00"]]}),
        ("working_hours", {"mon": [["09:00"]]}),
        ("working_hours", {"mon": "09:00-17:00"}),
        ("working_hours", {"mon": [["09:00", "09:30"]] * 9}),
        ("status", "on-leave"),
        ("ooo_until", "2030-07-01T08:00:00"),
        ("ooo_until", "0001-01-01T00:00:00Z"),
    ],
)
async def test_a_rep_that_cannot_be_is_refused_naming_the_field_and_nothing_is_written(
    handoff: Handoff, field: str, value: Any
) -> None:
    await handoff.add_reps(ANA)
    before = (await handoff.client.get("/v1/reps/rep-ana", headers=handoff.admin)).json()

    created = await handoff.client.post(
        "/v1/reps", json={**ANA, "rep_id": "rep-ben", field: value}, headers=handoff.admin
    )
    patched = await handoff.client.patch("/v1/reps/rep-ana", json={field: value}, headers=handoff.admin)

    assert failing_fields(created) == {field}
    assert failing_fields(patched) == {field}
    listed = await handoff.client.get("/v1/reps", headers=handoff.admin)
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [before]


@pytest.mark.parametrize("field", ["name", "territories", "segments", "weight", "capacity", "timezone", "status"])
async def test_patch_cannot_clear_what_every_rep_has(handoff: Handoff, field: str) -> None:
    await handoff.add_reps(ANA)
    before = (await handoff.client.get("/v1/reps/rep-ana", headers=handoff.admin)).json()

    response = await handoff.client.patch("/v1/reps/rep-ana", json={field: None}, headers=handoff.admin)

    assert failing_fields(response) == {field}
    listed = await handoff.client.get("/v1/reps", headers=handoff.admin)
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [before]


async def test_patch_clears_what_a_rep_may_lack(handoff: Handoff) -> None:
    await handoff.add_reps(
        {
            **ANA,
            "email": "ana@example.com",
            "working_hours": {"mon": [["09:00", "17:00"]]},
            "ooo_until": "2030-07-01T00:00:00Z",
        }
    )
    cleared = {"email": None, "team": None, "working_hours": None, "ooo_until": None}

    response = await handoff.client.patch("/v1/reps/rep-ana", json=cleared, headers=handoff.admin)

    assert response.status_code == 200, response.text
    listed = await handoff.client.get("/v1/reps", headers=handoff.admin)
    [rep] = listed.json()["items"]
    assert {name: rep[name] for name in cleared} == cleared
    assert rep["territories"] == ["DE"]


async def test_patch_changes_only_the_fields_it_names(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)

    response = await handoff.client.patch(
        "/v1/reps/rep-ana", json={"status": "away", "territories": ["FR"]}, headers=handoff.admin
    )

    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("status", "territories", "name", "team", "capacity")} == {
        "status": "away",
        "territories": ["FR"],
        "name": "Ana",
        "team": "emea",
        "capacity": 20,
    }


async def test_deleted_rep_is_gone_and_its_closed_assignments_stay(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified())
    [assignment] = await handoff.assignments()
    assert (
        await handoff.report(assignment["assignment_id"], {"type": "rejected", "reason": "other"})
    ).status_code == 200

    deleted = await handoff.client.delete("/v1/reps/rep-ana", headers=handoff.admin)
    again = await handoff.client.delete("/v1/reps/rep-ana", headers=handoff.admin)

    assert deleted.status_code == 204
    assert_problem(again, 404)
    assert_problem(await handoff.client.get("/v1/reps/rep-ana", headers=handoff.admin), 404)
    assert [(a["rep_id"], a["status"]) for a in await handoff.assignments()] == [("rep-ana", "rejected")]


# assignments: who sees what


async def test_rep_token_cannot_list_another_reps_assignments(handoff: Handoff) -> None:
    response = await handoff.client.get(
        "/v1/assignments", params={"rep_id": "rep-ben"}, headers=handoff.token("assignments:read", rep_id="rep-ana")
    )

    assert_problem(response, 403)


async def test_rep_token_lists_only_its_own_assignments(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, {**ANA, "rep_id": "rep-ben", "name": "Ben"})
    await handoff.route(*(qualified() for _ in range(4)))

    response = await handoff.client.get("/v1/assignments", headers=handoff.token("assignments:read", rep_id="rep-ana"))

    assert response.status_code == 200
    assert [a["rep_id"] for a in response.json()["items"]] == ["rep-ana", "rep-ana"]
    assert sorted(a["rep_id"] for a in await handoff.assignments()) == ["rep-ana"] * 2 + ["rep-ben"] * 2


async def test_team_filter_and_team_tokens_see_only_that_team(handoff: Handoff) -> None:
    await handoff.add_reps(ANA, {**ANA, "rep_id": "rep-ben", "name": "Ben", "team": "amer"})
    await handoff.route(*(qualified() for _ in range(4)))
    emea_lead = handoff.token("assignments:read", team="emea")

    filtered = await handoff.assignments(team="amer")
    team_view = await handoff.client.get("/v1/assignments", headers=emea_lead)
    other_team = await handoff.client.get("/v1/assignments", params={"team": "amer"}, headers=emea_lead)

    assert [a["rep_id"] for a in filtered] == ["rep-ben", "rep-ben"]
    assert [a["team"] for a in team_view.json()["items"]] == ["emea", "emea"]
    assert_problem(other_team, 403)


async def test_unknown_assignment_is_not_found(handoff: Handoff) -> None:
    response = await handoff.client.get("/v1/assignments/no-such-assignment", headers=handoff.admin)

    body = assert_problem(response, 404)
    assert "no-such-assignment" in body["detail"]


@pytest.mark.parametrize("cursor", ["abc", "²", "99999999999999999999"])
async def test_a_cursor_not_from_next_cursor_is_a_bad_request(handoff: Handoff, cursor: str) -> None:
    response = await handoff.client.get("/v1/assignments", params={"cursor": cursor}, headers=handoff.admin)

    assert_problem(response, 400)


async def test_updated_since_filters_by_last_change(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified(), at=NOW - timedelta(days=2))
    await handoff.route(qualified(), at=NOW - timedelta(hours=1))

    recent = await handoff.assignments(updated_since=(NOW - timedelta(days=1)).isoformat())

    assert [a["created_at"] for a in recent] == ["2030-06-03T08:00:00Z"]


async def test_naive_updated_since_is_refused(handoff: Handoff) -> None:
    response = await handoff.client.get(
        "/v1/assignments", params={"updated_since": "2030-06-01T00:00:00"}, headers=handoff.admin
    )

    body = assert_problem(response, 422)
    assert [error["loc"] for error in body["errors"]] == [["query", "updated_since"]]


@pytest.mark.parametrize("status", ["open", "ASSIGNED"])
async def test_unknown_status_filter_is_refused(handoff: Handoff, status: str) -> None:
    response = await handoff.client.get("/v1/assignments", params={"status": status}, headers=handoff.admin)

    assert_problem(response, 422)


# assignments: what sales tools report


async def test_accepting_an_assignment_publishes_its_status_change(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA)
        await handoff.route(qualified(source="webinar", campaign="spring"))
        [assignment] = await handoff.assignments()

        answer = await handoff.report(
            assignment["assignment_id"], {"type": "accepted", "occurred_at": "2030-06-03T10:30:00+02:00"}
        )

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "accepted"
    assert answer.json()["updated_at"] == "2030-06-03T09:00:00Z"
    [event] = await written_events(settings, LeadStatusChanged.event_type)
    change = LeadStatusChanged.model_validate(event.data)
    assert (change.assignment_id, change.status, change.rep_id, change.source, change.campaign) == (
        assignment["assignment_id"],
        "accepted",
        "rep-ana",
        "webinar",
        "spring",
    )
    assert change.occurred_at == datetime(2030, 6, 3, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "occurred_at",
    [
        pytest.param("2030-06-03T08:30:00", id="naive"),
        pytest.param((NOW + timedelta(minutes=1)).isoformat(), id="in-the-future"),
        pytest.param((ROUTED_AT - timedelta(seconds=1)).isoformat(), id="before-the-assignment"),
    ],
)
async def test_a_report_whose_time_cannot_be_is_refused_and_changes_nothing(
    settings: HandoffSettings, occurred_at: str
) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA)
        await handoff.route(qualified())
        [assignment] = await handoff.assignments()

        answer = await handoff.report(assignment["assignment_id"], {"type": "accepted", "occurred_at": occurred_at})

        assert failing_fields(answer) == {"occurred_at"}
        assert [a["status"] for a in await handoff.assignments()] == ["assigned"]
    assert await written_events(settings, LeadStatusChanged.event_type) == []


async def test_illegal_transition_is_a_conflict(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified())
    [assignment] = await handoff.assignments()

    answer = await handoff.report(assignment["assignment_id"], {"type": "won", "amount": "100.00"})

    body = assert_problem(answer, 409)
    assert "assigned cannot become won" in body["detail"]


async def test_accept_and_reject_at_the_same_moment_on_sqlite_one_wins(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA)
        ids = await one_report_wins_per_assignment(handoff, pairs=10)

    assert_one_status_change_each(await written_events(settings, LeadStatusChanged.event_type), ids)


# routing


@pytest.mark.parametrize(
    "closing",
    [["rejected"], ["accepted", "lost"], ["accepted", "contacted", "qualified", "won"]],
    ids=["rejected", "lost", "won"],
)
async def test_a_closed_assignment_frees_its_reps_capacity(handoff: Handoff, closing: list[str]) -> None:
    await handoff.add_reps({**ANA, "capacity": 1})
    await handoff.route(qualified("lead-1"), qualified("lead-2"))
    [first] = await handoff.assignments(status="assigned")

    for status in closing:
        answer = await handoff.report(first["assignment_id"], {"type": status, "reason": "other"})
        assert answer.status_code == 200, answer.text
    await handoff.route(qualified("lead-3"))

    # lead-2 waited in the queue and took the capacity the closing freed; lead-3 waits now.
    assert [(a["lead_id"], a["rep_id"], a["status"]) for a in await handoff.assignments()] == [
        ("lead-1", "rep-ana", closing[-1]),
        ("lead-2", "rep-ana", "assigned"),
        ("lead-3", None, "queued"),
    ]
    kept, counted = await open_counts(handoff)
    assert kept == counted == {"rep-ana": 1}


async def test_leads_routed_in_one_transaction_take_turns_and_count_against_capacity(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps({**ANA, "capacity": 1}, {**ANA, "rep_id": "rep-ben", "capacity": 2})
        await handoff.route(*(qualified(f"lead-{n}") for n in range(4)))

        assigned = [(a["lead_id"], a["rep_id"]) for a in await handoff.assignments()]
        kept, counted = await open_counts(handoff)

    assert assigned == [("lead-0", "rep-ana"), ("lead-1", "rep-ben"), ("lead-2", "rep-ben"), ("lead-3", None)]
    assert kept == counted == {"rep-ana": 1, "rep-ben": 2}
    assigned_events = await written_events(settings, LeadAssigned.event_type)
    assert sorted(event.subject for event in assigned_events) == ["lead-0", "lead-1", "lead-2"]


async def statements_to_route(handoff: Handoff, leads: int) -> int:
    """How many SQL statements routing ``leads`` MQLs in one transaction sends on its connection, commit included."""
    sent: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    handler = handoff.runtime.spec.consumers["handoff"][LeadQualified.event_type]
    async with handoff.runtime.sessions() as session:
        async with session.begin():
            # Only this session's connection: the service's workers use the same engine meanwhile.
            connection = (await session.connection()).sync_connection
            assert connection is not None
            sqlalchemy_event.listen(connection, "before_cursor_execute", count)
            batch = [qualified() for _ in range(leads)]
            begin_batch(session, (lead.lead_id for lead in batch))
            for lead in batch:
                event_in = Incoming(id=new_id(), source="/baton/scoring", time=NOW, data=lead, now=NOW)
                await handler(event_in, session)
        sqlalchemy_event.remove(connection, "before_cursor_execute", count)
    return len(sent)


async def test_routing_a_batch_costs_one_statement_per_lead_beyond_a_fixed_few(handoff: Handoff) -> None:
    await handoff.add_reps(*({**ANA, "rep_id": f"rep-{n}", "weight": n, "capacity": 1000} for n in range(1, 4)))
    await handoff.client.post(
        "/v1/routing-rules",
        json={
            "name": "de",
            "priority": 1,
            "conditions": [{"field": "country", "op": "eq", "value": "DE"}],
            "team": "emea",
            "method": "weighted",
            "sla": {"accept_within": "P30D", "touch_within": "P60D"},
        },
        headers=handoff.admin,
    )

    small = await statements_to_route(handoff, 10)
    large = await statements_to_route(handoff, 61)

    # Per lead: the assignment's insert and its lead.assigned outbox row (one multi-row insert on PostgreSQL).
    assert large - small == 2 * 51
    assert small - 2 * 10 <= 8


async def test_the_same_lead_qualified_twice_in_one_transaction_is_assigned_once(settings: HandoffSettings) -> None:
    async with running_handoff(settings) as handoff:
        await handoff.add_reps(ANA, {**ANA, "rep_id": "rep-ben"})
        await handoff.route(qualified("lead-1"), qualified("lead-1"))
        await handoff.route(qualified("lead-1"))

        assert [a["lead_id"] for a in await handoff.assignments()] == ["lead-1"]
    assert len(await written_events(settings, LeadAssigned.event_type)) == 1


async def test_a_recycled_lead_that_qualifies_again_gets_a_new_assignment(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified("lead-1"))
    [first] = await handoff.assignments()
    rejected = await handoff.report(first["assignment_id"], {"type": "rejected", "reason": "not_a_fit"})

    await handoff.route(qualified("lead-1"))

    assert rejected.status_code == 200
    assert [(a["lead_id"], a["status"]) for a in await handoff.assignments()] == [
        ("lead-1", "rejected"),
        ("lead-1", "assigned"),
    ]


async def test_the_database_refuses_a_second_open_assignment_for_a_lead(handoff: Handoff) -> None:
    await handoff.add_reps(ANA)
    await handoff.route(qualified("lead-1"))

    with pytest.raises(IntegrityError):
        async with handoff.runtime.sessions() as session, session.begin():
            session.add(second_assignment_of("lead-1"))


def second_assignment_of(lead_id: str) -> Assignment:
    return Assignment(
        id=new_id(),
        lead_id=lead_id,
        rep_id="rep-ana",
        rule="default",
        attempt=1,
        status="accepted",
        lead={},
        decision={},
        accept_due_at=NOW,
        touch_due_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    )


async def test_upgrading_closes_duplicate_open_assignments_and_counts_open_ones(settings: HandoffSettings) -> None:
    await upgrading_closes_duplicate_open_assignments_and_counts_open_ones(settings)
