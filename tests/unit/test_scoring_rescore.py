"""Rescoring under a changed model: exactly the leads whose score changes publish lead.scored, an MQL is
never qualified again, a job survives a restart, and the API queues it and shows its progress.

The service runs without its background worker, and the tests drive the worker's steps (claim a job, run
its chunks) themselves, so every step is deterministic."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from baton.auth import issue_token
from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.consumer import EventConsumer
from baton.events import LEADS_SCORED, CloudEvent, EventData, LeadQualified, LeadReceived, LeadScored
from baton.outbox import decode_record
from baton.runtime import ServiceRuntime
from baton_scoring import rescore
from baton_scoring.app import create_app
from baton_scoring.consumers import HANDLERS
from baton_scoring.model import DEFAULT_MODEL_V2
from baton_scoring.models import LeadScore, RescoreJob
from baton_scoring.settings import ScoringSettings
from tests.unit.conftest import assert_problem

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@dataclasses.dataclass
class Scoring:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    admin: dict[str, str]
    clock: list[datetime]
    read_topic: Callable[[EmbeddedLog, str], Awaitable[list[Record]]]

    async def apply(self, *events: EventData) -> None:
        consumer = EventConsumer(
            group="scoring", handlers=HANDLERS, bus=self.runtime.bus, sessions=self.runtime.sessions
        )
        await consumer.on_batch([Record.from_event(CloudEvent.wrap(e, source="/baton/test")) for e in events])

    async def put_model(self, **changes: Any) -> None:
        body = DEFAULT_MODEL_V2.model_dump(mode="json") | changes
        response = await self.client.put("/v1/model", json=body, headers=self.admin)
        assert response.status_code == 200, response.text

    async def rescore(self, **lead_filter: Any) -> dict[str, Any]:
        """Asks for a rescore over HTTP, then does what the worker would until the job is done."""
        response = await self.client.post("/v1/rescore", json=lead_filter, headers=self.admin)
        assert response.status_code == 202, response.text
        job_id = await rescore._claim(self.runtime)
        assert job_id == response.json()["job_id"]
        while await rescore.run_chunk(self.runtime, job_id):
            pass
        progress = await self.client.get(response.headers["Location"], headers=self.admin)
        assert progress.status_code == 200
        body: dict[str, Any] = progress.json()
        return body

    async def published(self) -> list[EventData]:
        """Every event scoring has published on leads.scored so far, the outbox drained first; read once a test."""
        while await self.runtime.relay.publish_pending():
            pass
        assert isinstance(self.runtime.bus, EmbeddedLog)
        return [decode_record(r).payload() for r in await self.read_topic(self.runtime.bus, LEADS_SCORED)]


@pytest.fixture
async def scoring(
    tmp_path: Path, read_topic: Callable[[EmbeddedLog, str], Awaitable[list[Record]]]
) -> AsyncIterator[Scoring]:
    clock = [NOW]
    app = create_app(ScoringSettings(data_dir=tmp_path), clock=lambda: clock[0])
    runtime: ServiceRuntime = app.state.runtime
    runtime.spec = dataclasses.replace(runtime.spec, workers=())
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        admin = {"Authorization": f"Bearer {issue_token(runtime.signing_secret, scopes=['admin'])}"}
        yield Scoring(client=client, runtime=runtime, admin=admin, clock=clock, read_topic=read_topic)


def received(lead_id: str, **changes: Any) -> LeadReceived:
    fields: dict[str, Any] = {
        "lead_id": lead_id,
        "email": f"{lead_id}@acme.example",
        "title": "Marketing Manager",
        "company_size": 300,
        "source": "webinar",
        "received_at": NOW - timedelta(days=1),
    }
    return LeadReceived.model_validate(fields | changes)


LEADS = (
    received("l1"),  # a manager: 20, C
    received("l2", title="CEO", company_size=5_000),  # 45, A: an MQL
    received("l3", title="Engineer", source="ads"),  # 10, C
)


def rule_points(name: str, points: int) -> list[dict[str, Any]]:
    rules = DEFAULT_MODEL_V2.model_dump(mode="json")["fit_rules"]
    return [rule | {"points": points} if rule["name"] == name else rule for rule in rules]


async def test_a_model_change_then_rescore_changes_exactly_the_leads_it_should(scoring: Scoring) -> None:
    await scoring.apply(*LEADS)
    await scoring.put_model(fit_rules=rule_points("title: manager", 25))

    job = await scoring.rescore()

    assert (job["status"], job["total"], job["processed"], job["changed"], job["model_version"]) == (
        "done",
        3,
        3,
        1,
        3,
    )
    published = await scoring.published()
    assert [(type(e).__name__, e.lead_id) for e in published[:4]] == [
        ("LeadScored", "l1"),
        ("LeadScored", "l2"),
        ("LeadQualified", "l2"),
        ("LeadScored", "l3"),
    ]
    [rescored] = published[4:]
    assert isinstance(rescored, LeadScored)
    assert (rescored.lead_id, rescored.score, rescored.fit_grade, rescored.model_version) == ("l1", 35, "B", 3)
    async with scoring.runtime.sessions() as session:
        versions = dict((await session.execute(select(LeadScore.lead_id, LeadScore.model_version))).all())
    assert versions == {"l1": 3, "l2": 3, "l3": 3}


async def test_rescore_never_qualifies_an_mql_again_but_qualifies_a_lead_the_new_model_makes_one(
    scoring: Scoring,
) -> None:
    await scoring.apply(*LEADS)
    await scoring.put_model(mql_threshold=20)

    await scoring.rescore()
    await scoring.rescore()

    qualified = [e.lead_id for e in await scoring.published() if isinstance(e, LeadQualified)]
    assert sorted(qualified) == ["l1", "l2"]  # l2 once, before; l1 once, by the rescore; l3 is 10 points


async def test_a_filtered_rescore_touches_only_the_leads_it_selects(scoring: Scoring) -> None:
    await scoring.apply(*LEADS)
    await scoring.put_model(fit_rules=rule_points("title: manager", 25))

    job = await scoring.rescore(source="ads")

    assert (job["total"], job["processed"], job["changed"]) == (1, 1, 0)
    async with scoring.runtime.sessions() as session:
        versions = dict((await session.execute(select(LeadScore.lead_id, LeadScore.model_version))).all())
    assert versions == {"l1": 2, "l2": 2, "l3": 3}


async def test_a_rescore_left_half_done_by_a_stopped_replica_is_finished_by_another_after_its_lease(
    scoring: Scoring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rescore, "CHUNK", 2)
    await scoring.apply(*LEADS)
    await scoring.put_model(fit_rules=rule_points("title: manager", 25))
    response = await scoring.client.post("/v1/rescore", json={}, headers=scoring.admin)
    job_id = await rescore._claim(scoring.runtime)
    assert job_id is not None
    assert await rescore.run_chunk(scoring.runtime, job_id)  # then the replica stops

    assert await rescore._claim(scoring.runtime) is None  # its lease still holds
    scoring.clock[0] = NOW + rescore.LEASE + timedelta(seconds=1)
    assert await rescore._claim(scoring.runtime) == job_id
    while await rescore.run_chunk(scoring.runtime, job_id):
        pass

    job = (await scoring.client.get(response.headers["Location"], headers=scoring.admin)).json()
    assert (job["status"], job["processed"], job["changed"]) == ("done", 3, 1)
    async with scoring.runtime.sessions() as session:
        assert (await session.get(RescoreJob, job_id)) is not None


async def test_rescore_is_for_admins_and_an_unknown_job_is_404(scoring: Scoring) -> None:
    reader = {"Authorization": f"Bearer {issue_token(scoring.runtime.signing_secret, scopes=['leads:read'])}"}

    assert_problem(await scoring.client.post("/v1/rescore", json={}, headers=reader), 403)
    assert_problem(await scoring.client.get("/v1/rescore/nope", headers=scoring.admin), 404)
    bad = await scoring.client.post("/v1/rescore", json={"lead_ids": []}, headers=scoring.admin)
    assert_problem(bad, 422)


async def test_pruning_forgets_rescores_finished_longer_ago_than_their_retention_and_keeps_the_rest(
    scoring: Scoring,
) -> None:
    await scoring.apply(*LEADS)
    finished = (await scoring.rescore())["job_id"]
    waiting = (await scoring.client.post("/v1/rescore", json={}, headers=scoring.admin)).json()["job_id"]

    scoring.clock[0] = NOW + timedelta(days=29)
    await scoring.runtime.prune()
    kept = await scoring.client.get(f"/v1/rescore/{finished}", headers=scoring.admin)
    scoring.clock[0] = NOW + timedelta(days=31)
    await scoring.runtime.prune()

    assert kept.status_code == 200
    assert_problem(await scoring.client.get(f"/v1/rescore/{finished}", headers=scoring.admin), 404)
    assert (await scoring.client.get(f"/v1/rescore/{waiting}", headers=scoring.admin)).status_code == 200
