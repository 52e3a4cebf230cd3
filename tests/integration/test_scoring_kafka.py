"""scoring on the real Kafka and PostgreSQL: redelivered events score once, a crossing qualifies once, a model
change and a rescore change exactly the leads they should, and a recycled lead qualifies again.

Each test watches leads.scored with its own consumer group and waits for the events it expects; a last
event for the same lead (same key, same partition, so applied after everything before it) tells the test
that the events before it are done, so it can also assert on what was not published."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from baton.auth import issue_token
from baton.bus import Record
from baton.events import (
    LEADS_SCORED,
    CloudEvent,
    EventData,
    LeadActivity,
    LeadQualified,
    LeadReceived,
    LeadRecycled,
    LeadScored,
)
from baton.outbox import decode_record
from baton.runtime import ServiceRuntime
from baton_scoring.app import create_app
from baton_scoring.model import DEFAULT_MODEL_V2
from baton_scoring.settings import ScoringSettings
from tests.conftest import KAFKA_BOOTSTRAP

pytestmark = pytest.mark.integration

# Kafka's group joins for the service and the watcher, and the events themselves, with room to spare.
WAIT_SECONDS = 60
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class Scoring:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    admin: dict[str, str]
    seen: list[EventData] = field(default_factory=list)
    news: asyncio.Event = field(default_factory=asyncio.Event)

    async def publish(self, *events: CloudEvent) -> None:
        await self.runtime.bus.publish([Record.from_event(e) for e in events])

    async def until(self, what: str, check: Callable[[list[EventData]], bool]) -> None:
        """Waits until the events seen on leads.scored satisfy ``check``."""
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                while True:
                    self.news.clear()
                    if check(self.seen):
                        return
                    await self.news.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {WAIT_SECONDS} s; saw {self.seen!r}") from None

    def of(self, lead_id: str) -> list[EventData]:
        return [e for e in self.seen if e.lead_id == lead_id]


@pytest.fixture
async def settings(
    tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]], unique_name: str
) -> ScoringSettings:
    return ScoringSettings(
        data_dir=tmp_path,
        database_url=await fresh_database("scoring"),
        bus="kafka",
        kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
        kafka_topic_prefix=f"{unique_name}.",
        kafka_replication_factor=1,
    )


@asynccontextmanager
async def running(settings: ScoringSettings) -> AsyncIterator[Scoring]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as client,
    ):
        runtime: ServiceRuntime = app.state.runtime
        admin = {"Authorization": f"Bearer {issue_token(runtime.signing_secret, scopes=['admin'])}"}
        scoring = Scoring(client=client, runtime=runtime, admin=admin)

        async def watch(batch: Sequence[Record]) -> None:
            scoring.seen.extend(decode_record(record).payload() for record in batch)
            scoring.news.set()

        watching = asyncio.create_task(runtime.bus.consume("scoring-watch", [LEADS_SCORED], watch))
        try:
            yield scoring
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)


def ingested(event: EventData) -> CloudEvent:
    return CloudEvent.wrap(event, source="/baton/lead-ingest")


def received(lead_id: str, **changes: Any) -> CloudEvent:
    fields: dict[str, Any] = {
        "lead_id": lead_id,
        "email": f"{lead_id}@acme.example",
        "title": "Marketing Manager",
        "company_size": 300,
        "source": "webinar",
        "received_at": T0,
    }
    return ingested(LeadReceived.model_validate(fields | changes))


def activity(lead_id: str, kind: str, *, days: float = 0) -> CloudEvent:
    return ingested(LeadActivity(lead_id=lead_id, activity_type=kind, occurred_at=T0 + timedelta(days=days)))


def scores(events: list[EventData]) -> list[int]:
    return [e.score for e in events if isinstance(e, LeadScored)]


def qualified(events: list[EventData]) -> list[LeadQualified]:
    return [e for e in events if isinstance(e, LeadQualified)]


async def test_a_redelivered_activity_adds_no_points_twice(settings: ScoringSettings) -> None:
    webinar = activity("l1", "webinar_attended")
    async with running(settings) as scoring:
        await scoring.publish(received("l1"), webinar, webinar, activity("l1", "email_click"))

        await scoring.until("score after the click", lambda _: len(scores(scoring.of("l1"))) == 3)

    assert scores(scoring.of("l1")) == [20, 30, 33]


async def test_lead_qualified_is_published_once_when_the_crossing_event_arrives_twice(
    settings: ScoringSettings,
) -> None:
    crossing = activity("l1", "webinar_attended")  # 20 + 10 + 10 = 40, the threshold
    async with running(settings) as scoring:
        await scoring.publish(received("l1"), activity("l1", "webinar_attended"), crossing, crossing)
        await scoring.publish(activity("l1", "pricing_page_view"))

        await scoring.until("score after the page view", lambda _: 48 in scores(scoring.of("l1")))

    [mql] = qualified(scoring.of("l1"))
    assert (mql.reason, mql.score) == ("threshold", 40)
    assert scores(scoring.of("l1")) == [20, 30, 40, 48]


async def test_a_model_change_then_a_rescore_changes_exactly_the_leads_it_should(settings: ScoringSettings) -> None:
    async with running(settings) as scoring:
        await scoring.publish(
            received("l1"), received("l2", title="CEO", company_size=5_000), received("l3", title="Engineer")
        )
        await scoring.until("the three leads scored", lambda seen: len(scores(seen)) == 3)
        rules = [
            rule | {"points": 25} if rule["name"] == "title: manager" else rule
            for rule in DEFAULT_MODEL_V2.model_dump(mode="json")["fit_rules"]
        ]
        put = await scoring.client.put(
            "/v1/model", json=DEFAULT_MODEL_V2.model_dump(mode="json") | {"fit_rules": rules}, headers=scoring.admin
        )
        assert put.status_code == 200, put.text

        asked = await scoring.client.post("/v1/rescore", json={}, headers=scoring.admin)
        assert asked.status_code == 202, asked.text
        await scoring.until(
            "the rescored manager", lambda seen: any(isinstance(e, LeadScored) and e.model_version == 3 for e in seen)
        )
        # Every lead was rescored in the transaction that published that event; a lead received now comes after.
        progress = (await scoring.client.get(asked.headers["Location"], headers=scoring.admin)).json()
        await scoring.publish(received("l4"))
        await scoring.until("the lead received after the rescore", lambda _: bool(scoring.of("l4")))

    assert (progress["total"], progress["processed"], progress["changed"]) == (3, 3, 1)
    rescored = [(e.lead_id, e.score, e.fit_grade) for e in scoring.seen if isinstance(e, LeadScored)][3:]
    assert rescored == [("l1", 35, "B"), ("l4", 35, "B")]
    assert [q.lead_id for q in qualified(scoring.seen)] == ["l2"]


async def test_a_recycled_lead_qualifies_again_when_it_raises_its_hand(settings: ScoringSettings) -> None:
    recycled = CloudEvent.wrap(
        LeadRecycled(lead_id="l1", reason="not now"), source="/baton/handoff", time=T0 + timedelta(days=1)
    )
    async with running(settings) as scoring:
        await scoring.publish(received("l1", title="CEO", company_size=5_000))
        await scoring.until("the first qualification", lambda seen: len(qualified(seen)) == 1)

        await scoring.publish(recycled, activity("l1", "demo_request", days=2))
        await scoring.until("the second qualification", lambda seen: len(qualified(seen)) == 2)

        score = (await scoring.client.get("/v1/leads/l1/score", headers=scoring.admin)).json()

    assert [q.reason for q in qualified(scoring.of("l1"))] == ["threshold", "hand-raiser"]
    assert (score["status"], score["cycle"]) == ("mql", 2)
