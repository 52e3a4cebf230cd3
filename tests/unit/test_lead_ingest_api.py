"""lead-ingest's HTTP API, driven in-process on SQLite and the embedded log in tmp_path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from baton.auth import issue_token
from baton.bus import Record
from baton.bus.embedded import EmbeddedLog
from baton.events import LEADS_INGESTED, CloudEvent
from baton.outbox import OutboxEntry, OutboxRelay, decode_record
from baton_lead_ingest.app import create_app
from baton_lead_ingest.domain import (
    MAX_ACTIVITIES,
    MAX_ACTIVITY_TYPE_LENGTH,
    MAX_BATCH_LEADS,
    MAX_PROPERTIES_BYTES,
    MAX_PROPERTIES_DEPTH,
    MAX_UTM_KEY_LENGTH,
    MAX_UTM_KEYS,
    MAX_UTM_VALUE_LENGTH,
)
from baton_lead_ingest.models import Lead
from baton_lead_ingest.schemas import LeadIn
from baton_lead_ingest.settings import IngestSettings
from tests.unit.conftest import assert_problem

ConsumeRecords = Callable[[EmbeddedLog, str, Sequence[str], int], Awaitable[list[Record]]]
PROBLEM_JSON = "application/problem+json"
RECEIVED = "baton.lead.received.v1"
UPDATED = "baton.lead.updated.v1"


@dataclass
class Ingest:
    """A running lead-ingest: a client for its API, tokens it trusts, and what it holds."""

    client: httpx.AsyncClient
    app: FastAPI

    def token(self, *scopes: str, subject: str | None = None) -> dict[str, str]:
        """An Authorization header with a token this service trusts."""
        secret = self.app.state.runtime.settings.signing_secret()
        return {"Authorization": f"Bearer {issue_token(secret, scopes=list(scopes), subject=subject)}"}

    def writer(self, subject: str = "crm-sync", *, key: str | None = None) -> dict[str, str]:
        """Headers of a ``leads:write`` caller, with an Idempotency-Key if given."""
        headers = self.token("leads:write", subject=subject)
        return headers if key is None else {**headers, "Idempotency-Key": key}

    async def outbox(self) -> list[CloudEvent]:
        """The events waiting in the outbox, in the order they will be published."""
        async with self.app.state.runtime.sessions() as session:
            rows = await session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))
            return [CloudEvent.model_validate_json(row.payload) for row in rows]

    async def lead_count(self) -> int:
        async with self.app.state.runtime.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Lead)) or 0)


@asynccontextmanager
async def running(settings: IngestSettings) -> AsyncIterator[Ingest]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
    ):
        yield Ingest(client=client, app=app)


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[Ingest]:
    async with running(IngestSettings(data_dir=tmp_path)) as service:
        yield service


@pytest.fixture
def held_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps events in the outbox: the relay publishes nothing, so the outbox shows everything that would be."""

    async def publish_nothing(_: OutboxRelay) -> int:
        return 0

    monkeypatch.setattr(OutboxRelay, "publish_pending", publish_nothing)


def failing_fields(response: httpx.Response) -> set[tuple[str | int, ...]]:
    return {tuple(error["loc"]) for error in assert_problem(response, 422)["errors"]}


# authentication and validation


async def test_posting_a_lead_without_a_token_is_unauthorized(ingest: Ingest) -> None:
    response = await ingest.client.post("/v1/leads", json={"email": "jane@example.com"})

    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_posting_a_lead_with_an_invalid_token_is_unauthorized(ingest: Ingest) -> None:
    forged = issue_token("another-secret-" + "x" * 40, scopes=["leads:write"])

    response = await ingest.client.post(
        "/v1/leads", json={"email": "jane@example.com"}, headers={"Authorization": f"Bearer {forged}"}
    )

    assert_problem(response, 401)


async def test_posting_a_lead_with_a_metrics_token_is_forbidden(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/leads", json={"email": "jane@example.com"}, headers=ingest.token("metrics:read")
    )

    body = assert_problem(response, 403)
    assert "leads:write" in body["detail"]


async def test_invalid_lead_is_rejected_listing_every_failing_field(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/leads",
        json={"email": "not-an-address", "nickname": "JD", "company_size": -3},
        headers=ingest.writer(),
    )

    assert failing_fields(response) == {("body", "email"), ("body", "nickname"), ("body", "company_size")}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"next": value}
    return value


@pytest.mark.parametrize(
    ("lead", "field"),
    [
        ({"company": "A" * 301}, ("body", "company")),
        ({"utm": {f"utm_{n}": "x" for n in range(MAX_UTM_KEYS + 1)}}, ("body", "utm")),
        ({"utm": {"k" * (MAX_UTM_KEY_LENGTH + 1): "x"}}, ("body", "utm", "k" * (MAX_UTM_KEY_LENGTH + 1), "[key]")),
        ({"utm": {"utm_source": "v" * (MAX_UTM_VALUE_LENGTH + 1)}}, ("body", "utm", "utm_source")),
        ({"activities": [{"type": "click"}] * (MAX_ACTIVITIES + 1)}, ("body", "activities")),
        ({"activities": [{"type": "t" * (MAX_ACTIVITY_TYPE_LENGTH + 1)}]}, ("body", "activities", 0, "type")),
        (
            {"activities": [{"type": "click", "properties": {"blob": "x" * MAX_PROPERTIES_BYTES}}]},
            ("body", "activities", 0, "properties"),
        ),
        (
            {"activities": [{"type": "click", "properties": _nested(MAX_PROPERTIES_DEPTH + 1)}]},
            ("body", "activities", 0, "properties"),
        ),
        (
            {"activities": [{"type": "click", "properties": {"deep": json.loads("[" * 600 + "]" * 600)}}]},
            ("body", "activities", 0, "properties"),
        ),
        ({"company": "Acme\x00"}, ("body", "company")),
        ({"utm": {"utm_source": "ads\x00"}}, ("body", "utm", "utm_source")),
    ],
    ids=[
        "string",
        "utm-keys",
        "utm-key-length",
        "utm-value-length",
        "activities",
        "activity-type",
        "properties-size",
        "properties-depth",
        "properties-past-the-validators-recursion-limit",
        "nul-in-string",
        "nul-in-utm",
    ],
)
async def test_lead_over_a_limit_is_refused_naming_the_field(
    ingest: Ingest, lead: dict[str, Any], field: tuple[str | int, ...]
) -> None:
    response = await ingest.client.post(
        "/v1/leads", json={"email": "jane@example.com", **lead}, headers=ingest.writer()
    )

    assert failing_fields(response) == {field}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
async def test_properties_holding_numbers_json_cannot_carry_are_refused(ingest: Ingest, number: str) -> None:
    body = '{"email": "jane@example.com", "activities": [{"type": "click", "properties": {"ratio": NUMBER}}]}'
    body = body.replace("NUMBER", number)

    response = await ingest.client.post(
        "/v1/leads", content=body, headers={**ingest.writer(), "Content-Type": "application/json"}
    )

    assert failing_fields(response) == {("body", "activities", 0, "properties")}


async def test_properties_within_the_limits_are_accepted(ingest: Ingest) -> None:
    properties = {"page": "/pricing", "nested": _nested(MAX_PROPERTIES_DEPTH - 1)}

    response = await ingest.client.post(
        "/v1/leads",
        json={"email": "jane@example.com", "activities": [{"type": "click", "properties": properties}]},
        headers=ingest.writer(),
    )

    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "occurred_at", ["2024-05-01T12:30:00", "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00"]
)
async def test_activity_time_without_an_offset_or_out_of_range_is_refused(ingest: Ingest, occurred_at: str) -> None:
    response = await ingest.client.post(
        "/v1/leads",
        json={"email": "jane@example.com", "activities": [{"type": "click", "occurred_at": occurred_at}]},
        headers=ingest.writer(),
    )

    assert failing_fields(response) == {("body", "activities", 0, "occurred_at")}


@pytest.mark.usefixtures("held_relay")
async def test_activity_time_is_published_in_utc(ingest: Ingest) -> None:
    await ingest.client.post(
        "/v1/leads",
        json={
            "email": "jane@example.com",
            "activities": [{"type": "demo_request", "occurred_at": "2024-05-01T14:30:00+02:00"}],
        },
        headers=ingest.writer(),
    )

    [event] = await ingest.outbox()
    assert event.data["activities"] == [
        {"type": "demo_request", "occurred_at": "2024-05-01T12:30:00Z", "properties": {}}
    ]


@pytest.mark.usefixtures("held_relay")
async def test_largest_valid_lead_makes_events_well_under_a_mebibyte(ingest: Ingest) -> None:
    # "\x01" is the character JSON spends most bytes on (six: \u0001).
    worst = "\x01"
    lead: dict[str, Any] = {
        name: worst * next(rule.max_length for rule in field.metadata if hasattr(rule, "max_length"))
        for name, field in LeadIn.model_fields.items()
        if name not in {"email", "phone", "country", "company_size", "utm", "activities"}
    }
    assert len(lead) == 8
    # Normalised fields: the longest address e-mail allows (254 bytes), a phone kept as written (control
    # characters are taken out, so its worst characters are four UTF-8 bytes each), a country held as two letters.
    lead["email"] = "j" * 64 + "@" + "e" * 63 + "." + "e" * 63 + "." + "e" * 57 + ".com"
    lead["phone"] = "1" + "\U0001f4de" * 63
    lead["country"] = "United Kingdom of Great Britain and Northern Ireland"
    lead["utm"] = {worst * (MAX_UTM_KEY_LENGTH - 2) + f"{n:02}": worst * MAX_UTM_VALUE_LENGTH for n in range(20)}
    properties_budget = MAX_PROPERTIES_BYTES - len('{"p":""}')
    lead["activities"] = [
        {
            "type": worst * MAX_ACTIVITY_TYPE_LENGTH,
            "occurred_at": "2024-05-01T12:30:00Z",
            "properties": {"p": worst * (properties_budget // 6)},
        }
    ] * MAX_ACTIVITIES
    posted = await ingest.client.post("/v1/leads", json=lead, headers=ingest.writer())
    other_utm = {key[::-1]: value for key, value in lead["utm"].items()}
    merged = await ingest.client.post("/v1/leads", json={**lead, "utm": other_utm}, headers=ingest.writer())

    assert posted.status_code == merged.status_code == 202, merged.text
    events = await ingest.outbox()
    assert [event.type for event in events] == [RECEIVED, UPDATED]
    sizes = [len(event.model_dump_json().encode()) for event in events]
    assert max(sizes) > 150_000  # the lead really is the largest the limits allow
    assert max(sizes) < 256 * 1024


# single posts


async def test_valid_lead_is_accepted_as_received(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/leads",
        json={"email": "jane.doe@example.com", "first_name": "Jane", "company": "Acme", "title": "CMO"},
        headers=ingest.writer(),
    )

    assert response.status_code == 202, response.text
    body = response.json()
    assert body == {"lead_id": body["lead_id"], "status": "received", "duplicate": False}
    assert body["lead_id"]


async def test_accepted_lead_is_published_as_lead_received(
    ingest: Ingest, tmp_path: Path, consume_records: ConsumeRecords
) -> None:
    response = await ingest.client.post(
        "/v1/leads", json={"email": "jane.doe@example.com", "title": "CMO"}, headers=ingest.writer()
    )
    log = EmbeddedLog(tmp_path / "bus.db", poll_interval=0.01)
    await log.start()
    try:
        [record] = await consume_records(log, "test-reader", [LEADS_INGESTED], 1)
    finally:
        await log.stop()

    event = decode_record(record)
    assert event.type == RECEIVED
    assert event.subject == response.json()["lead_id"]
    assert event.data["email"] == "jane.doe@example.com"
    assert event.data["title"] == "CMO"


@pytest.mark.usefixtures("held_relay")
async def test_same_person_with_differently_cased_email_merges_into_the_same_lead(ingest: Ingest) -> None:
    first = await ingest.client.post("/v1/leads", json={"email": "jane.doe@example.com"}, headers=ingest.writer())
    again = await ingest.client.post("/v1/leads", json={"email": "  Jane.Doe@EXAMPLE.com "}, headers=ingest.writer())

    assert first.json()["duplicate"] is False
    assert again.status_code == 202
    assert again.json() == {"lead_id": first.json()["lead_id"], "status": "received", "duplicate": True}
    assert await ingest.lead_count() == 1


@pytest.mark.usefixtures("held_relay")
async def test_merge_publishes_lead_updated_with_only_the_changed_fields(ingest: Ingest) -> None:
    first = await ingest.client.post(
        "/v1/leads",
        json={"email": "jane@example.com", "first_name": "Jane", "title": "CMO", "utm": {"utm_source": "ads"}},
        headers=ingest.writer(),
    )
    await ingest.client.post(
        "/v1/leads",
        json={
            "email": "JANE@example.com",
            "first_name": "Jane",
            "title": "CEO",
            "utm": {"utm_medium": "cpc"},
            "activities": [{"type": "webinar", "occurred_at": "2024-05-02T09:00:00Z"}],
        },
        headers=ingest.writer(),
    )

    received, updated = await ingest.outbox()
    lead_id = first.json()["lead_id"]
    assert (received.type, received.subject) == (RECEIVED, lead_id)
    assert (updated.type, updated.subject) == (UPDATED, lead_id)
    assert updated.data["changed"] == {"title": "CEO", "utm": {"utm_source": "ads", "utm_medium": "cpc"}}
    assert updated.data["activities"] == [{"type": "webinar", "occurred_at": "2024-05-02T09:00:00Z", "properties": {}}]


# Idempotency-Key


@pytest.mark.usefixtures("held_relay")
async def test_same_key_and_body_repeats_the_first_answer_and_publishes_nothing(ingest: Ingest) -> None:
    headers = ingest.writer(key="form-submission-42")

    first = await ingest.client.post("/v1/leads", json={"email": "jane.doe@example.com"}, headers=headers)
    again = await ingest.client.post("/v1/leads", json={"email": "jane.doe@example.com"}, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.content == first.content
    assert again.json()["duplicate"] is False
    assert [event.type for event in await ingest.outbox()] == [RECEIVED]


@pytest.mark.usefixtures("held_relay")
async def test_same_key_with_the_body_in_another_key_order_is_the_same_request(ingest: Ingest) -> None:
    headers = {**ingest.writer(key="k-1"), "Content-Type": "application/json"}
    lead = {"email": "jane@example.com", "utm": {"utm_source": "ads", "utm_medium": "cpc"}, "title": "CMO"}
    reordered = {"title": "CMO", "utm": {"utm_medium": "cpc", "utm_source": "ads"}, "email": "jane@example.com"}

    first = await ingest.client.post("/v1/leads", content=json.dumps(lead), headers=headers)
    again = await ingest.client.post("/v1/leads", content=json.dumps(reordered, indent=2), headers=headers)

    assert again.status_code == 202
    assert again.json() == first.json()
    assert len(await ingest.outbox()) == 1


@pytest.mark.usefixtures("held_relay")
async def test_same_key_with_a_different_body_is_refused_and_stores_nothing(ingest: Ingest) -> None:
    headers = ingest.writer(key="form-submission-42")
    await ingest.client.post("/v1/leads", json={"email": "jane@example.com"}, headers=headers)

    refused = await ingest.client.post("/v1/leads", json={"email": "ben@example.com"}, headers=headers)
    ben = await ingest.client.post("/v1/leads", json={"email": "ben@example.com"}, headers=ingest.writer())

    body = assert_problem(refused, 422)
    assert "Idempotency-Key" in body["detail"]
    assert ben.json()["duplicate"] is False  # the refused post did not store Ben
    assert [event.subject for event in await ingest.outbox()] == [
        (await ingest.outbox())[0].subject,
        ben.json()["lead_id"],
    ]


@pytest.mark.usefixtures("held_relay")
async def test_another_callers_same_key_is_a_request_of_its_own(ingest: Ingest) -> None:
    jane = await ingest.client.post(
        "/v1/leads", json={"email": "jane@example.com"}, headers=ingest.writer("crm-sync", key="1")
    )
    ben = await ingest.client.post(
        "/v1/leads", json={"email": "ben@example.com"}, headers=ingest.writer("web-forms", key="1")
    )

    assert ben.status_code == 202
    assert ben.json()["lead_id"] != jane.json()["lead_id"]
    assert [event.data["email"] for event in await ingest.outbox()] == ["jane@example.com", "ben@example.com"]


@pytest.mark.usefixtures("held_relay")
async def test_repeat_of_a_merge_under_its_key_answers_duplicate_again_and_publishes_nothing(ingest: Ingest) -> None:
    await ingest.client.post("/v1/leads", json={"email": "jane@example.com"}, headers=ingest.writer())
    headers = ingest.writer(key="retry-me")

    merged = await ingest.client.post("/v1/leads", json={"email": "jane@example.com", "title": "CMO"}, headers=headers)
    again = await ingest.client.post("/v1/leads", json={"email": "jane@example.com", "title": "CMO"}, headers=headers)

    assert merged.json()["duplicate"] is True
    assert again.json() == merged.json()
    assert [event.type for event in await ingest.outbox()] == [RECEIVED, UPDATED]


# POST /v1/leads:batch


@pytest.mark.usefixtures("held_relay")
async def test_batch_answers_each_lead_by_position_and_a_bad_one_sinks_nothing(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/leads:batch",
        json={
            "leads": [
                {"email": "ann@example.com", "title": "CMO"},
                {"email": "not-an-address", "company_size": -1},
                "not even an object",
                {"email": "ben@example.com"},
            ]
        },
        headers=ingest.writer(),
    )

    assert response.status_code == 200, response.text
    ann, bad, malformed, ben = response.json()["items"]
    assert ann == {"index": 0, "status": 202, "lead_id": ann["lead_id"], "duplicate": False}
    assert ben == {"index": 3, "status": 202, "lead_id": ben["lead_id"], "duplicate": False}
    assert (bad["index"], bad["status"]) == (1, 422)
    assert {tuple(error["loc"]) for error in bad["errors"]} == {("email",), ("company_size",)}
    assert (malformed["index"], malformed["status"], malformed["errors"][0]["type"]) == (2, 422, "model_type")
    events = await ingest.outbox()
    assert [(event.type, event.subject) for event in events] == [
        (RECEIVED, ann["lead_id"]),
        (RECEIVED, ben["lead_id"]),
    ]


@pytest.mark.usefixtures("held_relay")
async def test_batch_item_for_a_person_already_in_the_batch_merges_into_the_first(ingest: Ingest) -> None:
    known = await ingest.client.post("/v1/leads", json={"email": "cat@example.com"}, headers=ingest.writer())

    response = await ingest.client.post(
        "/v1/leads:batch",
        json={
            "leads": [
                {"email": "ann@example.com", "title": "CMO"},
                {"email": "Ann@Example.com", "title": "CEO"},
                {"email": "cat@example.com", "company": "Acme"},
            ]
        },
        headers=ingest.writer(),
    )

    first, second, cat = response.json()["items"]
    assert (first["duplicate"], second["duplicate"], cat["duplicate"]) == (False, True, True)
    assert second["lead_id"] == first["lead_id"]
    assert cat["lead_id"] == known.json()["lead_id"]
    events = await ingest.outbox()
    assert [(event.type, event.subject) for event in events[1:]] == [
        (RECEIVED, first["lead_id"]),
        (UPDATED, first["lead_id"]),
        (UPDATED, cat["lead_id"]),
    ]
    assert events[2].data["changed"] == {"title": "CEO"}
    assert events[3].data["changed"] == {"company": "Acme"}
    assert await ingest.lead_count() == 2


@pytest.mark.usefixtures("held_relay")
async def test_batch_of_a_thousand_leads_is_received_whole(ingest: Ingest) -> None:
    leads = [{"email": f"lead-{n}@example.com", "company": f"Company {n}"} for n in range(MAX_BATCH_LEADS)]

    response = await ingest.client.post("/v1/leads:batch", json={"leads": leads}, headers=ingest.writer())

    items = response.json()["items"]
    assert [item["index"] for item in items] == list(range(MAX_BATCH_LEADS))
    assert all(item["status"] == 202 and item["duplicate"] is False for item in items)
    assert len({item["lead_id"] for item in items}) == MAX_BATCH_LEADS
    events = await ingest.outbox()
    assert [event.subject for event in events] == [item["lead_id"] for item in items]
    assert await ingest.lead_count() == MAX_BATCH_LEADS


@pytest.mark.parametrize("count", [0, MAX_BATCH_LEADS + 1])
async def test_batch_that_is_empty_or_over_a_thousand_is_refused(ingest: Ingest, count: int) -> None:
    leads = [{"email": f"lead-{n}@example.com"} for n in range(count)]

    response = await ingest.client.post("/v1/leads:batch", json={"leads": leads}, headers=ingest.writer())

    assert failing_fields(response) == {("body", "leads")}


@pytest.mark.usefixtures("held_relay")
async def test_batch_with_the_same_key_and_body_repeats_its_answer_and_publishes_nothing(ingest: Ingest) -> None:
    headers = ingest.writer(key="nightly-sync-2024-05-01")
    batch = {"leads": [{"email": "ann@example.com"}, {"email": "bad"}, {"email": "ben@example.com"}]}

    first = await ingest.client.post("/v1/leads:batch", json=batch, headers=headers)
    again = await ingest.client.post("/v1/leads:batch", json=batch, headers=headers)
    changed = await ingest.client.post("/v1/leads:batch", json={"leads": batch["leads"][:1]}, headers=headers)

    assert again.status_code == first.status_code == 200
    assert again.content == first.content
    assert_problem(changed, 422)
    assert len(await ingest.outbox()) == 2


@pytest.mark.usefixtures("held_relay")
async def test_batch_with_a_key_and_an_item_no_json_encoder_can_write_answers_it_as_invalid(ingest: Ingest) -> None:
    headers = {**ingest.writer(key="k"), "Content-Type": "application/json"}
    body = '{"leads": [{"email": "ann@example.com"}, {"email": "ben@example.com", "company": "\\ud800"}, "\\ud800"]}'

    first = await ingest.client.post("/v1/leads:batch", content=body, headers=headers)
    again = await ingest.client.post("/v1/leads:batch", content=body, headers=headers)

    assert first.status_code == 200, first.text
    assert [item["status"] for item in first.json()["items"]] == [202, 422, 422]
    assert again.content == first.content
    assert len(await ingest.outbox()) == 1


async def test_batch_route_documents_its_leads_as_canonical_leads(ingest: Ingest) -> None:
    schema = (await ingest.client.get("/openapi.json")).json()

    batch_body = schema["paths"]["/v1/leads:batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    batch_model = schema["components"]["schemas"][batch_body["$ref"].rpartition("/")[2]]
    assert batch_model["properties"]["leads"]["items"] == {"$ref": "#/components/schemas/LeadIn"}
    assert "LeadIn" in schema["components"]["schemas"]


@pytest.mark.usefixtures("held_relay")
async def test_lead_whose_event_is_larger_than_the_bus_carries_is_refused_alone(tmp_path: Path) -> None:
    async with running(IngestSettings(data_dir=tmp_path, max_event_bytes=2048)) as ingest:
        small = {"email": "ann@example.com"}
        large = {"email": "ben@example.com", "utm": {f"utm_{n}": "x" * 200 for n in range(10)}}

        answers = await asyncio.gather(
            *(ingest.client.post("/v1/leads", json=lead, headers=ingest.writer()) for lead in (small, large, small))
        )

        assert [answer.status_code for answer in answers] == [202, 413, 202]
        assert "bytes" in assert_problem(answers[1], 413)["detail"]
        assert [event.data.get("email") for event in await ingest.outbox()] == ["ann@example.com", None]
        assert await ingest.lead_count() == 1
