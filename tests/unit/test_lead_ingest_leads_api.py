"""lead-ingest's GET /v1/leads/{lead_id} and POST /v1/activities, driven in-process on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.auth import issue_token
from baton_lead_ingest.domain import MAX_PROPERTIES_BYTES
from baton_lead_ingest.settings import IngestSettings
from tests.unit.conftest import assert_problem
from tests.unit.test_lead_ingest_api import RECEIVED, Ingest, failing_fields, running
from tests.unit.test_lead_ingest_api import held_relay as held_relay  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("held_relay")

ACTIVITY = "baton.lead.activity.v1"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JANE = {
    "email": "Jane.Doe@Example.com",
    "first_name": "Jane",
    "last_name": "Doe",
    "company": "Acme",
    "title": "VP Sales",
    "phone": "+14155550100",
    "country": "US",
    "company_size": 250,
    "industry": "Software",
    "source": "webinar",
    "campaign": "spring-launch",
    "utm": {"utm_source": "linkedin", "utm_medium": "paid"},
    "external_id": "crm-42",
}


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[Ingest]:
    async with running(IngestSettings(data_dir=tmp_path)) as service:
        service.app.state.runtime.clock = lambda: NOW
        yield service


async def post_jane(ingest: Ingest) -> str:
    response = await ingest.client.post("/v1/leads", json=JANE, headers=ingest.writer())
    assert response.status_code == 202, response.text
    lead_id: str = response.json()["lead_id"]
    return lead_id


def activity(**fields: Any) -> dict[str, Any]:
    return {"type": "demo_request", "occurred_at": "2025-03-01T11:30:00Z", "properties": {"page": "/pricing"}, **fields}


# GET /v1/leads/{lead_id}


@pytest.mark.parametrize("scope", ["leads:read", "admin"])
async def test_lead_is_read_back_with_its_canonical_fields_and_source(ingest: Ingest, scope: str) -> None:
    lead_id = await post_jane(ingest)

    response = await ingest.client.get(f"/v1/leads/{lead_id}", headers=ingest.token(scope))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "lead_id": lead_id,
        **JANE,
        "email": "jane.doe@example.com",  # held normalised: the address that identifies her
        "created_at": "2025-03-01T12:00:00Z",
        "updated_at": "2025-03-01T12:00:00Z",
    }


async def test_reading_an_unknown_lead_is_not_found(ingest: Ingest) -> None:
    response = await ingest.client.get("/v1/leads/no-such-lead", headers=ingest.token("leads:read"))

    assert "no-such-lead" in assert_problem(response, 404)["detail"]


async def test_reading_a_lead_with_a_writer_token_is_forbidden(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)

    response = await ingest.client.get(f"/v1/leads/{lead_id}", headers=ingest.token("leads:write"))

    assert "leads:read" in assert_problem(response, 403)["detail"]


async def test_reading_a_lead_without_a_token_is_unauthorized(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)

    response = await ingest.client.get(f"/v1/leads/{lead_id}")

    assert_problem(response, 401)


async def test_reading_a_lead_with_a_forged_token_is_unauthorized(ingest: Ingest) -> None:
    forged = issue_token("another-secret-" + "x" * 40, scopes=["leads:read"])

    response = await ingest.client.get("/v1/leads/any", headers={"Authorization": f"Bearer {forged}"})

    assert_problem(response, 401)


# POST /v1/activities


@pytest.mark.parametrize(
    "who",
    [{"email": "jane.doe@example.com"}, {"email": "  JANE.DOE@EXAMPLE.COM "}, {}],
    ids=["by-email", "by-email-in-another-case", "by-id"],
)
async def test_activity_of_a_known_lead_publishes_one_lead_activity(ingest: Ingest, who: dict[str, str]) -> None:
    lead_id = await post_jane(ingest)
    who = who or {"lead_id": lead_id}

    response = await ingest.client.post("/v1/activities", json=activity(**who), headers=ingest.writer())

    assert response.status_code == 202, response.text
    assert response.json() == {"lead_id": lead_id, "status": "accepted"}
    received, published = await ingest.outbox()
    assert (received.type, published.type) == (RECEIVED, ACTIVITY)
    assert published.subject == lead_id
    assert published.data == {
        "lead_id": lead_id,
        "activity_type": "demo_request",
        "occurred_at": "2025-03-01T11:30:00Z",
        "properties": {"page": "/pricing"},
    }


async def test_activity_time_is_published_in_utc(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)

    response = await ingest.client.post(
        "/v1/activities",
        json=activity(lead_id=lead_id, occurred_at="2025-03-01T13:30:00+02:00"),
        headers=ingest.writer(),
    )

    assert response.status_code == 202, response.text
    assert (await ingest.outbox())[-1].data["occurred_at"] == "2025-03-01T11:30:00Z"


@pytest.mark.parametrize(
    ("who", "named"),
    [({"lead_id": "no-such-lead"}, "no-such-lead"), ({"email": "ben@example.com"}, "ben@example.com")],
    ids=["id", "email"],
)
async def test_activity_of_an_unknown_lead_is_not_found_and_publishes_nothing(
    ingest: Ingest, who: dict[str, str], named: str
) -> None:
    await post_jane(ingest)

    response = await ingest.client.post("/v1/activities", json=activity(**who), headers=ingest.writer())

    detail = assert_problem(response, 404)["detail"]
    assert named in detail
    assert "send the lead first" in detail
    assert [event.type for event in await ingest.outbox()] == [RECEIVED]


async def test_activity_naming_the_lead_both_ways_is_refused_naming_both_fields(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)

    response = await ingest.client.post(
        "/v1/activities", json=activity(lead_id=lead_id, email="jane.doe@example.com"), headers=ingest.writer()
    )

    assert failing_fields(response) == {("body", "lead_id"), ("body", "email")}
    assert "both" in response.json()["errors"][0]["msg"]
    assert [event.type for event in await ingest.outbox()] == [RECEIVED]


async def test_activity_naming_no_lead_is_refused_naming_both_fields(ingest: Ingest) -> None:
    response = await ingest.client.post("/v1/activities", json=activity(), headers=ingest.writer())

    assert failing_fields(response) == {("body", "lead_id"), ("body", "email")}
    assert "neither" in response.json()["errors"][0]["msg"]


async def test_activity_more_than_the_clock_skew_in_the_future_is_refused(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)
    later = (NOW + timedelta(minutes=5, seconds=1)).isoformat()

    response = await ingest.client.post(
        "/v1/activities", json=activity(lead_id=lead_id, occurred_at=later), headers=ingest.writer()
    )

    assert failing_fields(response) == {("body", "occurred_at")}
    assert [event.type for event in await ingest.outbox()] == [RECEIVED]


async def test_activity_within_the_clock_skew_is_accepted(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)
    later = (NOW + timedelta(minutes=5)).isoformat()

    response = await ingest.client.post(
        "/v1/activities", json=activity(lead_id=lead_id, occurred_at=later), headers=ingest.writer()
    )

    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"properties": {"blob": "x" * MAX_PROPERTIES_BYTES}}, ("body", "properties")),
        ({"properties": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, ("body", "properties")),
        ({"type": "Demo Request"}, ("body", "type")),
        ({"type": "t" * 65}, ("body", "type")),
        ({"occurred_at": "2025-03-01T11:30:00"}, ("body", "occurred_at")),
        ({"occurred_at": None}, ("body", "occurred_at")),
        ({"email": "not-an-address"}, ("body", "email")),
    ],
    ids=[
        "oversized-properties",
        "too-deep-properties",
        "type-not-a-slug",
        "type-too-long",
        "naive-time",
        "no-time",
        "bad-email",
    ],
)
async def test_invalid_activity_is_refused_naming_the_field(
    ingest: Ingest, change: dict[str, Any], field: tuple[str, ...]
) -> None:
    lead_id = await post_jane(ingest)
    body = activity(**({"lead_id": lead_id} if "email" not in change else {}), **change)

    response = await ingest.client.post("/v1/activities", json=body, headers=ingest.writer())

    assert failing_fields(response) == {field}
    assert [event.type for event in await ingest.outbox()] == [RECEIVED]


async def test_posting_an_activity_without_a_token_is_unauthorized(ingest: Ingest) -> None:
    response = await ingest.client.post("/v1/activities", json=activity(email="jane.doe@example.com"))

    assert_problem(response, 401)


async def test_posting_an_activity_with_a_reader_token_is_forbidden(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/activities", json=activity(email="jane.doe@example.com"), headers=ingest.token("leads:read")
    )

    assert "leads:write" in assert_problem(response, 403)["detail"]


async def test_activity_with_the_same_key_and_body_repeats_its_answer_and_publishes_nothing(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)
    headers = ingest.writer(key="activity-1")

    first = await ingest.client.post("/v1/activities", json=activity(lead_id=lead_id), headers=headers)
    again = await ingest.client.post("/v1/activities", json=activity(lead_id=lead_id), headers=headers)

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.content == first.content
    assert [event.type for event in await ingest.outbox()] == [RECEIVED, ACTIVITY]


async def test_activity_with_the_same_key_and_another_body_is_refused(ingest: Ingest) -> None:
    lead_id = await post_jane(ingest)
    headers = ingest.writer(key="activity-1")
    await ingest.client.post("/v1/activities", json=activity(lead_id=lead_id), headers=headers)

    response = await ingest.client.post(
        "/v1/activities", json=activity(lead_id=lead_id, type="email_click"), headers=headers
    )

    assert "activity-1" in assert_problem(response, 422)["detail"]
    assert [event.type for event in await ingest.outbox()] == [RECEIVED, ACTIVITY]


async def test_activity_refused_as_unknown_can_be_repeated_under_its_key_once_the_lead_is_sent(
    ingest: Ingest,
) -> None:
    headers = ingest.writer(key="activity-1")
    body = activity(email="jane.doe@example.com")
    refused = await ingest.client.post("/v1/activities", json=body, headers=headers)
    lead_id = await post_jane(ingest)

    accepted = await ingest.client.post("/v1/activities", json=body, headers=headers)

    assert_problem(refused, 404)
    assert accepted.json() == {"lead_id": lead_id, "status": "accepted"}
    assert [event.type for event in await ingest.outbox()] == [RECEIVED, ACTIVITY]
