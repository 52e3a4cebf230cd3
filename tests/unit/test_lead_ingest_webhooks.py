"""lead-ingest's webhook sources, webhook intake, quarantine, replay and erasure, driven in-process on SQLite."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from standardwebhooks.webhooks import Webhook

from baton.errors import NotFound
from baton.events import CloudEvent
from baton_lead_ingest.models import QuarantinedPayload, Source
from baton_lead_ingest.settings import IngestSettings
from baton_lead_ingest.sources import SourceCache
from tests.unit.conftest import assert_problem
from tests.unit.test_lead_ingest_api import RECEIVED, UPDATED, Ingest, running
from tests.unit.test_lead_ingest_api import held_relay as held_relay  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("held_relay")

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
VENDORS = Path(__file__).parent.parent / "fixtures" / "vendors"
ERASED = "baton.lead.erased.v1"
GRACE = {"email": "Grace.Hopper@Example.org", "first_name": "Grace", "last_name": "Hopper", "phone": "+14155550142"}


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ingest(tmp_path: Path, clock: Clock) -> AsyncIterator[Ingest]:
    async with running(IngestSettings(data_dir=tmp_path)) as service:
        service.app.state.runtime.clock = clock
        yield service


async def create_source(ingest: Ingest, **settings: Any) -> dict[str, Any]:
    response = await ingest.client.post(
        "/v1/sources", json={"name": "forms", **settings}, headers=ingest.token("admin")
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def signed(secret: str, body: bytes, *, webhook_id: str = "msg_1", at: datetime = NOW) -> dict[str, str]:
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def post_signed(
    ingest: Ingest, secret: str, payload: Any, *, webhook_id: str = "msg_1", source: str = "forms"
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await ingest.client.post(
        f"/v1/sources/{source}/leads", content=body, headers=signed(secret, body, webhook_id=webhook_id)
    )


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def quarantined(ingest: Ingest) -> list[QuarantinedPayload]:
    async with ingest.app.state.runtime.sessions() as session:
        return list(await session.scalars(select(QuarantinedPayload).order_by(QuarantinedPayload.id)))


def of_type(events: list[CloudEvent], event_type: str) -> list[CloudEvent]:
    return [event for event in events if event.type == event_type]


# sources


async def test_a_new_source_answers_its_secret_once_and_keeps_it_encrypted(ingest: Ingest) -> None:
    created = await create_source(ingest, preset="typeform", verification="typeform", default_campaign="spring")

    secret = created.pop("secret")
    listed = await ingest.client.get("/v1/sources", headers=ingest.token("admin"))
    shown = await ingest.client.get("/v1/sources/forms", headers=ingest.token("admin"))
    async with ingest.app.state.runtime.sessions() as session:
        stored = await session.get(Source, "forms")

    assert created["webhook_path"] == "/v1/sources/forms/leads"
    assert listed.json() == [created]
    assert shown.json() == created
    assert secret not in listed.text + shown.text
    assert stored is not None and secret not in stored.secret


async def test_a_standard_webhooks_source_gets_a_whsec_secret_by_default(ingest: Ingest) -> None:
    created = await create_source(ingest)

    assert created["verification"] == "standard-webhooks"
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 32


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"preset": "salesforce-classic"}, ["body", "preset"]),
        ({"verification": "basic-auth"}, ["body", "verification"]),
        ({"rate_limit_per_minute": 0}, ["body", "rate_limit_per_minute"]),
        ({"name": "Forms With Spaces"}, ["body", "name"]),
        ({"field_map": {"emial": "email"}}, ["field_map", "emial"]),
        ({"field_map": {"email": "fields[name=email"}}, ["field_map", "email"]),
    ],
)
async def test_a_source_with_a_bad_setting_is_refused_naming_it(
    ingest: Ingest, settings: dict[str, Any], field: list[str]
) -> None:
    response = await ingest.client.post(
        "/v1/sources", json={"name": "forms", **settings}, headers=ingest.token("admin")
    )

    assert field in [error["loc"] for error in assert_problem(response, 422)["errors"]]
    assert (await ingest.client.get("/v1/sources", headers=ingest.token("admin"))).json() == []


async def test_a_second_source_of_the_same_name_is_a_conflict(ingest: Ingest) -> None:
    await create_source(ingest)

    response = await ingest.client.post("/v1/sources", json={"name": "forms"}, headers=ingest.token("admin"))

    assert_problem(response, 409)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/sources"),
        ("GET", "/v1/sources"),
        ("GET", "/v1/sources/forms"),
        ("PUT", "/v1/sources/forms"),
        ("POST", "/v1/sources/forms:rotate-secret"),
        ("GET", "/v1/quarantine"),
        ("GET", "/v1/quarantine/1"),
        ("POST", "/v1/quarantine/1/replay"),
        ("POST", "/v1/leads/some-lead:erase"),
    ],
)
async def test_admin_routes_refuse_other_tokens_and_none(ingest: Ingest, method: str, path: str) -> None:
    await create_source(ingest)
    body = {"name": "forms"} if method != "GET" else None

    anonymous = await ingest.client.request(method, path, json=body)
    writer = await ingest.client.request(method, path, json=body, headers=ingest.token("leads:write", "leads:read"))

    assert_problem(anonymous, 401)
    assert_problem(writer, 403)
    assert "secret" not in writer.text


async def test_updating_a_source_replaces_its_settings_and_keeps_its_secret(ingest: Ingest) -> None:
    created = await create_source(ingest, preset="typeform", verification="url-token")

    response = await ingest.client.put(
        "/v1/sources/forms",
        json={"verification": "url-token", "field_map": {"email": "contact.email"}, "rate_limit_per_minute": 60},
        headers=ingest.token("admin"),
    )

    assert response.status_code == 200, response.text
    assert "secret" not in response.json()
    assert response.json()["preset"] is None
    assert response.json()["field_map"] == {"email": "contact.email"}
    still = await ingest.client.post(
        f"/v1/sources/forms/leads?token={created['secret']}", json={"contact": {"email": "ada@example.com"}}
    )
    assert still.status_code == 202, still.text


async def test_changing_a_source_s_method_answers_a_new_secret_in_the_method_s_form(ingest: Ingest) -> None:
    created = await create_source(ingest, verification="url-token")

    response = await ingest.client.put(
        "/v1/sources/forms", json={"verification": "standard-webhooks"}, headers=ingest.token("admin")
    )

    assert response.json()["secret"].startswith("whsec_")
    assert response.json()["secret"] != created["secret"]


async def test_a_source_cannot_be_renamed_or_updated_when_missing(ingest: Ingest) -> None:
    await create_source(ingest)

    renamed = await ingest.client.put("/v1/sources/forms", json={"name": "other"}, headers=ingest.token("admin"))
    missing = await ingest.client.put("/v1/sources/nope", json={}, headers=ingest.token("admin"))

    assert_problem(renamed, 409)
    assert_problem(missing, 404)


async def test_a_rotated_out_secret_verifies_for_24_hours_and_then_no_more(ingest: Ingest, clock: Clock) -> None:
    old = (await create_source(ingest))["secret"]
    rotated = await ingest.client.post("/v1/sources/forms:rotate-secret", headers=ingest.token("admin"))
    new = rotated.json()["secret"]

    with_new = await post_signed(ingest, new, {"email": "a@example.com"}, webhook_id="m1")
    with_old = await post_signed(ingest, old, {"email": "b@example.com"}, webhook_id="m2")
    clock.now = NOW + timedelta(hours=24, seconds=1)
    late = await post_signed(ingest, old, {"email": "c@example.com"}, webhook_id="m3")

    assert rotated.json()["previous_secret_valid_until"] == "2025-03-02T12:00:00Z"
    assert new != old
    assert with_new.status_code == 202 and with_old.status_code == 202
    assert_problem(late, 401)


# webhook intake


async def test_a_signed_canonical_lead_is_received_from_its_source(ingest: Ingest) -> None:
    secret = (await create_source(ingest, default_campaign="spring"))["secret"]

    response = await post_signed(ingest, secret, {"email": "ada@example.com", "first_name": "Ada", "source": "x"})

    assert response.status_code == 202, response.text
    [event] = await ingest.outbox()
    assert event.type == RECEIVED
    assert event.data["lead_id"] == response.json()["lead_id"]
    assert (event.data["source"], event.data["campaign"], event.data["first_name"]) == ("forms", "spring", "Ada")


async def test_a_retried_webhook_id_gets_the_first_answer_and_publishes_nothing(ingest: Ingest) -> None:
    secret = (await create_source(ingest))["secret"]
    accepted = metric("baton_ingest_leads_total", source="forms", outcome="accepted")

    first = await post_signed(ingest, secret, {"email": "ada@example.com"})
    again = await post_signed(ingest, secret, {"email": "ada@example.com", "first_name": "Ada"})

    assert again.status_code == 202 and again.text == first.text
    assert len(await ingest.outbox()) == 1
    assert metric("baton_ingest_leads_total", source="forms", outcome="accepted") == accepted + 1


async def test_the_same_person_from_a_new_delivery_merges_into_their_lead(ingest: Ingest) -> None:
    secret = (await create_source(ingest))["secret"]

    first = await post_signed(ingest, secret, {"email": "ada@example.com"}, webhook_id="m1")
    second = await post_signed(ingest, secret, {"email": "ADA@example.com", "company": "Acme"}, webhook_id="m2")

    assert second.json() == {"lead_id": first.json()["lead_id"], "status": "received", "duplicate": True}
    assert of_type(await ingest.outbox(), UPDATED)[0].data["changed"] == {"company": "Acme"}


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda h: {**h, "webhook-signature": "v1,bm90IHRoZSBzaWduYXR1cmU="}, id="wrong-signature"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, id="unsigned"),
        pytest.param(lambda h: {**h, "webhook-timestamp": str(int(NOW.timestamp()) - 301)}, id="stale"),
        pytest.param(lambda h: {**h, "webhook-timestamp": str(int(NOW.timestamp()) + 301)}, id="from-the-future"),
        pytest.param(lambda h: {**h, "webhook-id": "msg_other"}, id="other-id"),
    ],
)
async def test_a_webhook_that_fails_verification_is_refused_counted_and_not_stored(ingest: Ingest, spoil: Any) -> None:
    secret = (await create_source(ingest))["secret"]
    body = json.dumps({"email": "ada@example.com"}).encode()
    failures = metric("baton_ingest_verification_failures_total", source="forms")

    response = await ingest.client.post("/v1/sources/forms/leads", content=body, headers=spoil(signed(secret, body)))

    assert_problem(response, 401)
    assert secret not in response.text
    assert await ingest.outbox() == [] and await quarantined(ingest) == [] and await ingest.lead_count() == 0
    assert metric("baton_ingest_verification_failures_total", source="forms") == failures + 1


async def test_a_webhook_to_an_unknown_source_is_not_found(ingest: Ingest) -> None:
    response = await ingest.client.post("/v1/sources/nope/leads", json={"email": "ada@example.com"})

    assert_problem(response, 404)


async def test_typeform_signed_sample_becomes_a_lead_and_a_resent_response_publishes_nothing(ingest: Ingest) -> None:
    secret = (await create_source(ingest, preset="typeform", verification="typeform"))["secret"]
    body = (VENDORS / "typeform.json").read_bytes()
    signature = "sha256=" + base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    headers = {"Typeform-Signature": signature, "content-type": "application/json"}

    first = await ingest.client.post("/v1/sources/forms/leads", content=body, headers=headers)
    resent = await ingest.client.post("/v1/sources/forms/leads", content=body, headers=headers)
    forged = await ingest.client.post(
        "/v1/sources/forms/leads", content=body, headers={**headers, "Typeform-Signature": "sha256=AAAA"}
    )

    assert first.status_code == 202, first.text
    assert resent.text == first.text
    assert_problem(forged, 401)
    [event] = await ingest.outbox()
    assert event.data["source"] == "forms" and event.data["external_id"] == "a3a12ec67a1365927098a606107fac15"


async def test_marketo_posts_of_one_person_merge_rather_than_count_as_retries(ingest: Ingest) -> None:
    secret = (await create_source(ingest, preset="marketo", verification="url-token"))["secret"]
    sample = json.loads((VENDORS / "marketo.json").read_text())

    first = await ingest.client.post(f"/v1/sources/forms/leads?token={secret}", json=sample)
    sample_again = json.loads(json.dumps(sample).replace("VP", "SVP"))
    second = await ingest.client.post(f"/v1/sources/forms/leads?token={secret}", json=sample_again)

    assert first.status_code == 202 and second.json()["duplicate"] is True
    assert [event.type for event in await ingest.outbox()] == [RECEIVED, UPDATED]


async def test_meta_signature_and_subscription_handshake(ingest: Ingest) -> None:
    secret = (await create_source(ingest, preset="meta-lead-ads", verification="meta"))["secret"]
    body = (VENDORS / "meta-lead-ads.json").read_bytes()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    query = {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": secret}

    handshake = await ingest.client.get(f"/v1/sources/forms/leads?{urlencode(query)}")
    wrong = await ingest.client.get(f"/v1/sources/forms/leads?{urlencode({**query, 'hub.verify_token': 'x'})}")
    posted = await ingest.client.post(
        "/v1/sources/forms/leads",
        content=body,
        headers={"X-Hub-Signature-256": signature, "content-type": "application/json"},
    )

    assert handshake.status_code == 200 and handshake.text == "1158201444"
    assert_problem(wrong, 401)
    assert posted.status_code in (200, 202), posted.text
    assert of_type(await ingest.outbox(), RECEIVED)


async def test_a_source_that_does_not_verify_with_meta_has_no_handshake(ingest: Ingest) -> None:
    secret = (await create_source(ingest))["secret"]
    query = {"hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": secret}

    assert_problem(await ingest.client.get(f"/v1/sources/forms/leads?{urlencode(query)}"), 404)


async def test_salesforce_web_to_lead_form_post_with_url_token_becomes_a_normalised_lead(ingest: Ingest) -> None:
    secret = (await create_source(ingest, preset="salesforce-web-to-lead", verification="url-token"))["secret"]
    body = (VENDORS / "salesforce-web-to-lead.txt").read_bytes().strip()
    headers = {"content-type": "application/x-www-form-urlencoded"}

    response = await ingest.client.post(f"/v1/sources/forms/leads?token={secret}", content=body, headers=headers)
    without = await ingest.client.post("/v1/sources/forms/leads", content=body, headers=headers)

    assert response.status_code == 202, response.text
    assert_problem(without, 401)
    [event] = await ingest.outbox()
    assert event.data["email"].lower() == "grace.hopper@example.org"
    assert (event.data["first_name"], event.data["source"]) == ("Grace", "forms")


async def test_mautic_post_with_several_leads_answers_each(ingest: Ingest) -> None:
    secret = (await create_source(ingest, preset="mautic"))["secret"]
    sample = json.loads((VENDORS / "mautic.json").read_text())

    response = await post_signed(ingest, secret, sample)

    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert len(items) >= 2 and all(item["status"] == 202 for item in items)
    assert len(of_type(await ingest.outbox(), RECEIVED)) == len({item["lead_id"] for item in items})


async def test_a_webhook_body_over_the_limit_is_refused_before_it_is_read(ingest: Ingest) -> None:
    secret = (await create_source(ingest))["secret"]
    body = b'{"email": "ada@example.com", "pad": "' + b"x" * (1024 * 1024) + b'"}'

    response = await ingest.client.post("/v1/sources/forms/leads", content=body, headers=signed(secret, body))

    assert_problem(response, 413)
    assert await quarantined(ingest) == [] and await ingest.outbox() == []


async def test_a_source_over_its_rate_limit_is_answered_429_with_retry_after(ingest: Ingest) -> None:
    secret = (await create_source(ingest, rate_limit_per_minute=2))["secret"]

    answers = [await post_signed(ingest, secret, {"email": f"p{n}@example.com"}, webhook_id=f"m{n}") for n in range(3)]

    assert [answer.status_code for answer in answers[:2]] == [202, 202]
    assert_problem(answers[2], 429)
    assert 1 <= int(answers[2].headers["retry-after"]) <= 60
    assert len(await ingest.outbox()) == 2


# quarantine and replay


async def test_a_verified_payload_without_an_email_is_quarantined_with_its_raw_body(ingest: Ingest) -> None:
    secret = (await create_source(ingest, field_map={"email": "contact.mail"}))["secret"]
    payload = {"contact": {"email": "ada@example.com", "name": "Ada"}}

    response = await post_signed(ingest, secret, payload)

    body = assert_problem(response, 422)
    assert body["errors"][0]["loc"] == ["email"]
    listed = await ingest.client.get("/v1/quarantine?source=forms", headers=ingest.token("admin"))
    [item] = listed.json()["items"]
    assert item["id"] == body["quarantine_id"] and item["replayed_at"] is None
    whole = await ingest.client.get(f"/v1/quarantine/{item['id']}", headers=ingest.token("admin"))
    assert json.loads(whole.json()["body"]) == payload
    assert whole.json()["headers"]["webhook-id"] == "msg_1"
    assert "webhook-signature" not in whole.json()["headers"]
    assert await ingest.outbox() == [] and await ingest.lead_count() == 0


@pytest.mark.parametrize(
    ("content", "content_type", "error_type"),
    [
        (b"{not json", "application/json", "body.unparseable"),
        (b"[1, 2]", "application/json", "body.not_an_object"),
        (b'{"email": "ada@example.com", "company_size": "lots"}', "application/json", "value_error"),
        (b'{"email": "ada@example.com", "shoe_size": 44}', "application/json", "extra_forbidden"),
        (b'{"email": "not-an-address"}', "application/json", "value_error"),
    ],
)
async def test_a_verified_payload_that_cannot_become_a_lead_is_kept_with_the_reason(
    ingest: Ingest, content: bytes, content_type: str, error_type: str
) -> None:
    secret = (await create_source(ingest))["secret"]
    headers = {**signed(secret, content), "content-type": content_type}

    response = await ingest.client.post("/v1/sources/forms/leads", content=content, headers=headers)

    problem = assert_problem(response, 422)
    assert error_type in {error["type"] for error in problem["errors"]}
    [kept] = await quarantined(ingest)
    assert kept.body.encode() == content and kept.id == problem["quarantine_id"]
    assert await ingest.outbox() == []


async def test_a_retried_quarantined_delivery_is_kept_once_and_answered_the_same(ingest: Ingest) -> None:
    secret = (await create_source(ingest, field_map={"email": "contact.mail"}))["secret"]
    quarantined_before = metric("baton_ingest_leads_total", source="forms", outcome="quarantined")

    first = await post_signed(ingest, secret, {"contact": {"email": "ada@example.com"}})
    again = await post_signed(ingest, secret, {"contact": {"email": "ada@example.com"}})

    assert again.status_code == 422 and again.text == first.text
    assert len(await quarantined(ingest)) == 1
    assert metric("baton_ingest_leads_total", source="forms", outcome="quarantined") == quarantined_before + 1


async def test_a_replay_after_the_map_is_fixed_makes_the_lead_exactly_once(ingest: Ingest) -> None:
    secret = (await create_source(ingest, field_map={"email": "contact.mail"}))["secret"]
    payload = {"contact": {"email": "ada@example.com", "name": "Ada"}}
    quarantine_id = assert_problem(await post_signed(ingest, secret, payload), 422)["quarantine_id"]
    admin = ingest.token("admin")

    too_soon = await ingest.client.post(f"/v1/quarantine/{quarantine_id}/replay", headers=admin)
    fixed = await ingest.client.put(
        "/v1/sources/forms", json={"field_map": {"email": "contact.email", "first_name": "contact.name"}}, headers=admin
    )
    replayed = await ingest.client.post(f"/v1/quarantine/{quarantine_id}/replay", headers=admin)
    twice = await ingest.client.post(f"/v1/quarantine/{quarantine_id}/replay", headers=admin)
    retried = await post_signed(ingest, secret, payload)

    assert_problem(too_soon, 422)
    assert fixed.status_code == 200
    assert replayed.status_code == 202, replayed.text
    assert_problem(twice, 409)
    assert retried.text == replayed.text
    [event] = await ingest.outbox()
    assert (event.data["email"], event.data["first_name"]) == ("ada@example.com", "Ada")
    [kept] = await quarantined(ingest)
    assert kept.lead_ids == [replayed.json()["lead_id"]] and kept.replayed_at == NOW


async def test_quarantine_pages_by_cursor_and_filters_by_source(ingest: Ingest) -> None:
    secret = (await create_source(ingest))["secret"]
    for n in range(5):
        await post_signed(ingest, secret, {"no_email": n}, webhook_id=f"m{n}")
    admin = ingest.token("admin")

    first = (await ingest.client.get("/v1/quarantine?limit=3", headers=admin)).json()
    rest = (await ingest.client.get(f"/v1/quarantine?limit=3&cursor={first['next_cursor']}", headers=admin)).json()
    other = (await ingest.client.get("/v1/quarantine?source=other", headers=admin)).json()
    bad_cursor = await ingest.client.get("/v1/quarantine?cursor=abc", headers=admin)

    assert len(first["items"]) == 3 and len(rest["items"]) == 2 and rest["next_cursor"] is None
    assert len({item["id"] for item in first["items"] + rest["items"]}) == 5
    assert other == {"items": [], "next_cursor": None}
    assert_problem(bad_cursor, 400)
    assert_problem(await ingest.client.get("/v1/quarantine/999", headers=admin), 404)


# erasure


async def table_rows_holding(ingest: Ingest, *needles: str) -> list[tuple[str, str]]:
    """Every (table, row) of lead-ingest's database whose text holds one of the needles, case-insensitively."""
    found = []
    async with ingest.app.state.runtime.sessions() as session:
        tables = (await session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'"))).all()
        assert {"leads", "quarantine", "idempotent_answers", "outbox"} <= set(tables)
        for table in tables:
            for row in await session.execute(text(f'SELECT * FROM "{table}"')):
                row_text = " ".join(str(value) for value in row).lower()
                found += [(table, needle) for needle in needles if needle.lower() in row_text]
    return found


async def test_erasure_removes_the_person_from_every_table_and_publishes_lead_erased(ingest: Ingest) -> None:
    secret = (await create_source(ingest, field_map={"email": "contact.email"}))["secret"]
    posted = await ingest.client.post("/v1/leads", json=GRACE, headers=ingest.writer(key="k1"))
    lead_id = posted.json()["lead_id"]
    await post_signed(ingest, secret, {"contact": {"email": "grace.hopper@example.org"}}, webhook_id="merge")
    await post_signed(ingest, secret, {"contact": {"mail": GRACE["email"], "name": "Hopper"}}, webhook_id="bad")
    assert await table_rows_holding(ingest, lead_id, "grace.hopper", "Hopper")

    erased = await ingest.client.post(f"/v1/leads/{lead_id}:erase", headers=ingest.token("admin"))
    again = await ingest.client.post(f"/v1/leads/{lead_id}:erase", headers=ingest.token("admin"))

    assert erased.status_code == 202 and erased.json() == {"lead_id": lead_id, "status": "erased"}
    assert again.json() == erased.json()
    held = await table_rows_holding(ingest, "grace.hopper", "Hopper", "4155550142", "Grace")
    # Only the outbox still holds the person, in the events published before the erasure.
    assert {table for table, _ in held} <= {"outbox"}
    assert sorted(await table_rows_holding(ingest, lead_id)) == [
        ("erased_leads", lead_id),
        *[("outbox", lead_id)] * len(await ingest.outbox()),
    ]
    assert of_type(await ingest.outbox(), ERASED)[0].data == {"lead_id": lead_id}
    assert len(of_type(await ingest.outbox(), ERASED)) == 1
    assert_problem(await ingest.client.get(f"/v1/leads/{lead_id}", headers=ingest.token("admin")), 404)


async def test_the_same_address_after_erasure_is_a_new_lead(ingest: Ingest) -> None:
    first = (await ingest.client.post("/v1/leads", json=GRACE, headers=ingest.writer())).json()["lead_id"]
    await ingest.client.post(f"/v1/leads/{first}:erase", headers=ingest.token("admin"))

    again = await ingest.client.post("/v1/leads", json=GRACE, headers=ingest.writer())

    assert again.json()["duplicate"] is False and again.json()["lead_id"] != first


async def test_erasing_an_unknown_lead_is_not_found(ingest: Ingest) -> None:
    response = await ingest.client.post("/v1/leads/no-such-lead:erase", headers=ingest.token("admin"))

    assert_problem(response, 404)
    assert await ingest.outbox() == []


async def test_a_token_over_its_rate_limit_is_answered_429_while_other_tokens_go_on(tmp_path: Path) -> None:
    async with running(IngestSettings(data_dir=tmp_path, token_rate_limit_per_minute=2)) as ingest:
        answers = [
            await ingest.client.post("/v1/leads", json={"email": f"p{n}@example.com"}, headers=ingest.writer("crm"))
            for n in range(3)
        ]
        other = await ingest.client.post("/v1/leads", json={"email": "q@example.com"}, headers=ingest.writer("dialer"))
        batch = await ingest.client.post(
            "/v1/leads:batch", json={"leads": [{"email": "r@example.com"}]}, headers=ingest.writer("crm")
        )

        assert [answer.status_code for answer in answers[:2]] == [202, 202]
        assert_problem(answers[2], 429)
        assert int(answers[2].headers["retry-after"]) >= 1
        assert other.status_code == 202
        assert_problem(batch, 429)
        assert await ingest.lead_count() == 3


async def test_a_source_changed_through_another_replica_applies_within_the_cache_time(ingest: Ingest) -> None:
    await create_source(ingest, default_campaign="spring")
    runtime = ingest.app.state.runtime
    ticks = [0.0]
    cache = SourceCache(runtime.sessions, ingest.app.state.secret_box, ttl_seconds=5, clock=lambda: ticks[0])
    before = await cache.get("forms")
    async with runtime.sessions() as session, session.begin():
        stored = await session.get(Source, "forms")
        assert stored is not None
        stored.default_campaign = "autumn"

    ticks[0] = 4.9
    held = await cache.get("forms")
    ticks[0] = 5.0
    after = await cache.get("forms")

    assert (before.default_campaign, held.default_campaign, after.default_campaign) == ("spring", "spring", "autumn")
    with pytest.raises(NotFound):
        await cache.get("created-elsewhere")
    await ingest.client.post("/v1/sources", json={"name": "created-elsewhere"}, headers=ingest.token("admin"))
    assert (await cache.get("created-elsewhere")).name == "created-elsewhere"


async def test_numbers_a_vendor_sends_for_text_fields_are_taken_as_text(ingest: Ingest) -> None:
    secret = (await create_source(ingest, field_map={"email": "e", "phone": "p", "external_id": "id", "company": "c"}))[
        "secret"
    ]

    response = await post_signed(ingest, secret, {"e": "ada@example.com", "p": 14155550100, "id": 42.0, "c": 7})

    assert response.status_code == 202, response.text
    [event] = await ingest.outbox()
    assert (event.data["phone"], event.data["external_id"], event.data["company"]) == ("14155550100", "42", "7")
