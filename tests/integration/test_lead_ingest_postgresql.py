"""lead-ingest on the real PostgreSQL: concurrent posts, keys and batches, within one replica and across two."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from baton.db import create_engine
from baton_lead_ingest.settings import IngestSettings
from tests.unit.test_lead_ingest_api import RECEIVED, UPDATED, Ingest, running
from tests.unit.test_lead_ingest_api import held_relay as held_relay  # noqa: F401 (a fixture)
from tests.unit.test_lead_ingest_migrations import assert_idempotency_migration_round_trips

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("held_relay")]

CONCURRENT_POSTS = 50


@pytest.fixture
async def database_url(fresh_database: Callable[[str], Awaitable[str]]) -> str:
    return await fresh_database("ingest")


@pytest.fixture
async def replicas(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Ingest, Ingest]]:
    """Two lead-ingest replicas on one PostgreSQL database, each with its own intake writer."""
    first = IngestSettings(data_dir=tmp_path / "a", database_url=database_url)
    second = IngestSettings(data_dir=tmp_path / "b", database_url=database_url, jwt_secret=first.signing_secret())
    async with running(first) as a, running(second) as b:
        yield a, b


async def test_concurrent_posts_with_the_same_key_and_body_make_one_lead_and_one_event(
    replicas: tuple[Ingest, Ingest],
) -> None:
    a, b = replicas
    headers = a.writer("crm-sync", key="submission-7")
    lead = {"email": "jane@example.com", "title": "CMO"}

    answers = await asyncio.gather(
        *((a if n % 2 else b).client.post("/v1/leads", json=lead, headers=headers) for n in range(CONCURRENT_POSTS))
    )

    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.content for answer in answers}) == 1
    assert answers[0].json()["duplicate"] is False
    assert await a.lead_count() == 1
    assert [event.type for event in await a.outbox()] == [RECEIVED]


async def test_concurrent_posts_with_the_same_key_on_one_replica_make_one_lead_and_one_event(
    database_url: str, tmp_path: Path
) -> None:
    async with running(IngestSettings(data_dir=tmp_path, database_url=database_url)) as ingest:
        headers = ingest.writer("crm-sync", key="submission-7")
        answers = await asyncio.gather(
            *(
                ingest.client.post("/v1/leads", json={"email": "jane@example.com"}, headers=headers)
                for _ in range(CONCURRENT_POSTS)
            )
        )

        assert {answer.status_code for answer in answers} == {202}
        assert len({answer.content for answer in answers}) == 1
        assert await ingest.lead_count() == 1
        assert [event.type for event in await ingest.outbox()] == [RECEIVED]


async def test_concurrent_posts_of_a_new_person_make_one_lead_and_merge_the_rest(
    replicas: tuple[Ingest, Ingest],
) -> None:
    a, b = replicas

    answers = await asyncio.gather(
        *(
            (a if n % 2 else b).client.post(
                "/v1/leads", json={"email": "jane@example.com", "title": f"title {n}"}, headers=a.writer()
            )
            for n in range(CONCURRENT_POSTS)
        )
    )

    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["lead_id"] for answer in answers}) == 1
    assert sorted(answer.json()["duplicate"] for answer in answers) == [False] + [True] * (CONCURRENT_POSTS - 1)
    events = await a.outbox()
    assert [event.type for event in events] == [RECEIVED] + [UPDATED] * (CONCURRENT_POSTS - 1)
    assert await a.lead_count() == 1


async def test_concurrent_batches_of_overlapping_people_store_each_person_once(
    replicas: tuple[Ingest, Ingest],
) -> None:
    a, b = replicas
    people = [f"person-{n}@example.com" for n in range(200)]
    batches = [
        {"leads": [{"email": email, "company": f"batch {n}"} for email in people[n * 20 :] + people[: n * 20]]}
        for n in range(6)
    ]

    answers = await asyncio.gather(
        *(
            (a if n % 2 else b).client.post("/v1/leads:batch", json=batch, headers=a.writer())
            for n, batch in enumerate(batches)
        )
    )

    assert {answer.status_code for answer in answers} == {200}
    items = [item for answer in answers for item in answer.json()["items"]]
    assert len(items) == 6 * len(people)
    assert sum(not item["duplicate"] for item in items) == len(people)
    assert await a.lead_count() == len(people)
    events = await a.outbox()
    assert sum(event.type == RECEIVED for event in events) == len(people)
    assert sum(event.type == UPDATED for event in events) == 5 * len(people)


async def test_a_nul_character_postgresql_cannot_store_is_refused_as_invalid(database_url: str, tmp_path: Path) -> None:
    async with running(IngestSettings(data_dir=tmp_path, database_url=database_url)) as ingest:
        refused = await ingest.client.post(
            "/v1/leads", json={"email": "jane@example.com", "company": "Acme\x00"}, headers=ingest.writer()
        )
        batch = await ingest.client.post(
            "/v1/leads:batch",
            json={"leads": [{"email": "ann@example.com"}, {"email": "ben@example.com", "title": "\x00"}]},
            headers=ingest.writer(),
        )

        assert refused.status_code == 422, refused.text
        assert [item["status"] for item in batch.json()["items"]] == [202, 422]
        assert await ingest.lead_count() == 1


async def test_idempotency_migration_downgrades_to_global_keys_and_upgrades_again(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await assert_idempotency_migration_round_trips(engine)
    finally:
        await engine.dispose()
