"""lead-ingest's webhook intake on the real PostgreSQL: retried deliveries, quarantine and replay racing across
two replicas."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from baton_lead_ingest.settings import IngestSettings
from tests.unit.test_lead_ingest_api import RECEIVED, Ingest, running
from tests.unit.test_lead_ingest_api import held_relay as held_relay  # noqa: F401 (a fixture)
from tests.unit.test_lead_ingest_webhooks import NOW, create_source, post_signed, quarantined, signed

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("held_relay")]

CONCURRENT_DELIVERIES = 50
CONCURRENT_REPLAYS = 10


@pytest.fixture
async def replicas(
    fresh_database: Callable[[str], Awaitable[str]], tmp_path: Path
) -> AsyncIterator[tuple[Ingest, Ingest]]:
    """Two lead-ingest replicas on one PostgreSQL database, sharing the key that encrypts source secrets."""
    database_url = await fresh_database("webhooks")
    first = IngestSettings(data_dir=tmp_path / "a", database_url=database_url)
    second = IngestSettings(data_dir=tmp_path / "b", database_url=database_url, jwt_secret=first.signing_secret())
    async with running(first) as a, running(second) as b:
        # Deliveries are signed at the tests' own instant, which both replicas take as now.
        a.app.state.runtime.clock = b.app.state.runtime.clock = lambda: NOW
        yield a, b


async def test_concurrent_retries_of_one_webhook_id_publish_one_event(replicas: tuple[Ingest, Ingest]) -> None:
    a, b = replicas
    secret = (await create_source(a))["secret"]

    answers = await asyncio.gather(
        *(
            post_signed(a if n % 2 else b, secret, {"email": "jane@example.com"}, webhook_id="msg_retried")
            for n in range(CONCURRENT_DELIVERIES)
        )
    )

    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.content for answer in answers}) == 1
    assert await a.lead_count() == 1
    assert [event.type for event in await a.outbox()] == [RECEIVED]


async def test_concurrent_deliveries_of_one_new_person_make_one_lead(replicas: tuple[Ingest, Ingest]) -> None:
    a, b = replicas
    secret = (await create_source(a))["secret"]

    answers = await asyncio.gather(
        *(
            post_signed(a if n % 2 else b, secret, {"email": "Jane@Example.com"}, webhook_id=f"msg_{n}")
            for n in range(CONCURRENT_DELIVERIES)
        )
    )

    assert {answer.status_code for answer in answers} == {202}
    assert len({answer.json()["lead_id"] for answer in answers}) == 1
    assert sorted(answer.json()["duplicate"] for answer in answers) == [False] + [True] * (CONCURRENT_DELIVERIES - 1)
    assert await a.lead_count() == 1


async def test_concurrent_retries_of_a_quarantined_delivery_keep_it_once(replicas: tuple[Ingest, Ingest]) -> None:
    a, b = replicas
    secret = (await create_source(a, field_map={"email": "contact.mail"}))["secret"]

    answers = await asyncio.gather(
        *(
            post_signed(a if n % 2 else b, secret, {"contact": {"email": "jane@example.com"}}, webhook_id="msg_bad")
            for n in range(CONCURRENT_DELIVERIES)
        )
    )

    assert {answer.status_code for answer in answers} == {422}
    assert len({answer.content for answer in answers}) == 1
    assert len(await quarantined(a)) == 1


async def test_concurrent_replays_of_one_quarantined_payload_make_one_lead(replicas: tuple[Ingest, Ingest]) -> None:
    a, b = replicas
    secret = (await create_source(a, field_map={"email": "contact.mail"}))["secret"]
    held = await post_signed(a, secret, {"contact": {"email": "jane@example.com"}}, webhook_id="msg_bad")
    quarantine_id = held.json()["quarantine_id"]
    await a.client.put("/v1/sources/forms", json={"field_map": {"email": "contact.email"}}, headers=a.token("admin"))

    answers = await asyncio.gather(
        *(
            (a if n % 2 else b).client.post(f"/v1/quarantine/{quarantine_id}/replay", headers=a.token("admin"))
            for n in range(CONCURRENT_REPLAYS)
        )
    )

    assert sorted(answer.status_code for answer in answers) == [202] + [409] * (CONCURRENT_REPLAYS - 1)
    assert await a.lead_count() == 1
    assert [event.type for event in await a.outbox()] == [RECEIVED]


async def test_a_payload_holding_nul_characters_is_kept_in_quarantine_on_postgresql(
    replicas: tuple[Ingest, Ingest],
) -> None:
    a, _ = replicas
    secret = (await create_source(a))["secret"]
    body = b'{"email": "jane@example.com", "nick\\u0000name": "J\\u0000"}'
    headers = {**signed(secret, body), "content-type": "application/json; " + "x" * 300}

    response = await a.client.post("/v1/sources/forms/leads", content=body, headers=headers)
    raw_nul = b'{"email": "jane@example.com", "note": "\x00"}'
    raw = await a.client.post(
        "/v1/sources/forms/leads", content=raw_nul, headers=signed(secret, raw_nul, webhook_id="msg_2")
    )

    assert response.status_code == 422, response.text
    assert raw.status_code == 422, raw.text
    kept = await quarantined(a)
    assert [payload.id for payload in kept] == [response.json()["quarantine_id"], raw.json()["quarantine_id"]]
    whole = await a.client.get(f"/v1/quarantine/{raw.json()['quarantine_id']}", headers=a.token("admin"))
    assert whole.json()["body_encoding"] == "base64"
    assert base64.b64decode(whole.json()["body"]) == raw_nul
