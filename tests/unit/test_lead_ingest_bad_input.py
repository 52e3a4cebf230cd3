"""Bad input of every kind against every intake endpoint of lead-ingest: a clear 4xx, nothing stored half-way,
nothing lost that could be kept (PRODUCT.md §7).

The endpoints: ``POST /v1/leads``, ``POST /v1/leads:batch``, ``POST /v1/activities``, and the webhook
``POST /v1/sources/{source}/leads`` from a standard-webhooks source (signed JSON) and from a url-token source
(form bodies). What a request left behind is read from the outbox (the relay is held), the leads, the answers kept
for Idempotency-Keys and delivery ids, and the quarantine.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select, text

from baton_lead_ingest.models import IdempotentAnswer, QuarantinedPayload
from tests.unit.conftest import assert_problem
from tests.unit.test_lead_ingest_api import RECEIVED, UPDATED, Ingest
from tests.unit.test_lead_ingest_api import held_relay as held_relay  # noqa: F401 (a fixture)
from tests.unit.test_lead_ingest_webhooks import NOW, create_source, signed
from tests.unit.test_lead_ingest_webhooks import clock as clock  # noqa: F401 (a fixture)
from tests.unit.test_lead_ingest_webhooks import ingest as ingest  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("held_relay")

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
ACTIVITY = "baton.lead.activity.v1"
MIB = 1024 * 1024
KNOWN_EMAIL = "known@example.com"
"""The lead the activities are posted for."""

API = ("leads", "batch", "activities")
HOOKS = ("webhook", "form")
LEAD_SHAPED = ("leads", "batch", "webhook", "form")
JSON_SHAPED = ("leads", "batch", "activities", "webhook")
EVERY = (*API, *HOOKS)
# Free-text fields of the canonical lead, held as given; a webhook's `source` is always its source's name.
TEXT_FIELDS = ("first_name", "last_name", "company", "title", "industry", "campaign", "external_id")

INJECTIONS = [
    "'; DROP TABLE leads;--",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "../../etc/passwd",
]
UNICODE = [
    "Ana 😀👩🏽‍💻🇧🇷",  # emoji, a skin tone, a zero-width-joined sequence, a flag
    "مرحبا \u202eשלום",  # right-to-left scripts and a right-to-left override
    "Zoe\u0308 n\u0303 e\u0301\u0327",  # combining marks, left decomposed
    "株式会社ΑΒΓ",
]


@dataclass(frozen=True)
class Held:
    """What lead-ingest holds: the events in its outbox, its leads, the answers kept and the quarantine."""

    events: tuple[str, ...]
    leads: int
    answers: tuple[tuple[str, str, int, str], ...]
    quarantined: tuple[bytes, ...]


async def held(ingest: Ingest) -> Held:
    events = tuple(event.id for event in await ingest.outbox())
    leads = await ingest.lead_count()
    async with ingest.app.state.runtime.sessions() as session:
        answers = await session.execute(
            select(IdempotentAnswer.caller, IdempotentAnswer.key, IdempotentAnswer.status, IdempotentAnswer.body)
        )
        kept = await session.scalars(select(QuarantinedPayload).order_by(QuarantinedPayload.id))
        return Held(
            events=events,
            leads=leads,
            answers=tuple(sorted((row.caller, row.key, row.status, row.body) for row in answers)),
            quarantined=tuple(
                base64.b64decode(row.body) if row.body_encoding == "base64" else row.body.encode() for row in kept
            ),
        )


@dataclass
class Intake:
    """One intake endpoint of a running lead-ingest, and how a request to it is made and shaped."""

    name: str
    ingest: Ingest
    secrets: dict[str, str]
    sent: int = 0

    @property
    def path(self) -> str:
        return {
            "leads": "/v1/leads",
            "batch": "/v1/leads:batch",
            "activities": "/v1/activities",
            "webhook": "/v1/sources/signed/leads",
            "form": f"/v1/sources/form/leads?token={self.secrets['form']}",
        }[self.name]

    def headers(self, body: bytes, *, key: str | None = None, webhook_id: str | None = None) -> dict[str, str]:
        """What authenticates a request: a writer's token and a fresh Idempotency-Key, a signature, or nothing."""
        self.sent += 1
        if self.name in API:
            return self.ingest.writer(key=key or f"key-{self.sent}")
        if self.name == "webhook":
            return signed(self.secrets["signed"], body, webhook_id=webhook_id or f"msg_{self.sent}")
        return {}

    async def post(
        self, body: bytes, *, content_type: str | None = None, key: str | None = None, webhook_id: str | None = None
    ) -> httpx.Response:
        headers = {
            **self.headers(body, key=key, webhook_id=webhook_id),
            "content-type": content_type or (FORM if self.name == "form" else JSON),
        }
        return await self.ingest.client.post(self.path, content=body, headers=headers)

    def body(self, fields: dict[str, Any]) -> bytes:
        """This endpoint's request carrying the fields: a lead (or a batch of one), an activity, or a form."""
        if self.name == "activities":
            activity = {"email": KNOWN_EMAIL, "type": "demo_request", "occurred_at": "2025-03-01T11:00:00Z"}
            return json.dumps({**activity, **fields}).encode()
        lead = {"email": "ada@example.com", **fields}
        if self.name == "form":
            return urlencode(lead, doseq=True).encode()
        return json.dumps({"leads": [lead]} if self.name == "batch" else lead).encode()


async def intake_for(ingest: Ingest, name: str) -> Intake:
    """The endpoint, with both webhook sources created and the lead that activities are posted for."""
    signed_source = await create_source(ingest, name="signed")
    form_source = await create_source(ingest, name="form", verification="url-token")
    known = await ingest.client.post("/v1/leads", json={"email": KNOWN_EMAIL}, headers=ingest.writer())
    assert known.status_code == 202, known.text
    return Intake(name, ingest, {"signed": signed_source["secret"], "form": form_source["secret"]})


def _names(named: set[tuple[str | int, ...]], field: tuple[str | int, ...]) -> bool:
    return any(loc[: len(field)] == field for loc in named)


async def assert_refused(
    intake: Intake, response: httpx.Response, before: Held, *, sent: bytes, fields: set[tuple[str | int, ...]]
) -> None:
    """The request was refused with a problem naming the fields and left nothing behind.

    A webhook payload that verified is kept whole in quarantine, its raw body as sent; a batch item's fields are
    named in its item of the 200 answer, and the answer is what the batch's Idempotency-Key keeps.
    """
    after = await held(intake.ingest)
    if intake.name == "batch" and response.status_code == 200:
        [item] = response.json()["items"]
        named = {tuple(error["loc"]) for error in item["errors"]}
        assert item["status"] == 422 and "lead_id" not in item
        [(_, _, status, answer)] = set(after.answers) - set(before.answers)
        assert (status, answer) == (200, response.text)
        assert (after.events, after.leads, after.quarantined) == (before.events, before.leads, before.quarantined)
    else:
        problem = assert_problem(response, 422)
        named = {tuple(error["loc"]) for error in problem["errors"]}
        if intake.name in ("leads", "activities"):
            # The canonical API names a field from the body; a webhook's errors and a batch item's from the lead.
            fields = {field if field[:1] == ("body",) else ("body", *field) for field in fields}
        if intake.name in HOOKS:
            assert after.quarantined == (*before.quarantined, sent)
            assert f"quarantine as {problem['quarantine_id']}" in problem["detail"]
            assert (after.events, after.leads) == (before.events, before.leads)
            assert len(after.answers) == len(before.answers) + (intake.name == "webhook")  # kept for its webhook-id
        else:
            assert after == before
    missing = {field for field in fields if not _names(named, field)}
    assert not missing, f"{missing} not named in {named}"


async def assert_nothing_stored(intake: Intake, before: Held) -> None:
    assert await held(intake.ingest) == before


Refusal = tuple[bytes, set[tuple[str | int, ...]]]
"""A request body and the fields its refusal must name (from the lead or activity; ``("body",)`` for all of it)."""


async def assert_each_refused(intake: Intake, refusals: list[Refusal], *, content_type: str | None = None) -> None:
    """Posts each body in turn; each is refused naming its fields, and leaves nothing behind but quarantine."""
    for body, fields in refusals:
        before = await held(intake.ingest)

        response = await intake.post(body, content_type=content_type)

        await assert_refused(intake, response, before, sent=body, fields=fields)


# malformed JSON (and malformed forms)

MALFORMED = [
    b'{"email": "ada@example.com"',
    b'{"email": "ada@example.com",}',
    b"{'email': 'ada@example.com'}",
    b'{"email": "ada@example.com"} {"email": "bob@example.com"}',
    b"",
]
NOT_UTF_8 = b'{"email": "ada\xff@example.com"}'
NESTED_PAST_THE_PARSER = [
    b"[" * 200_000 + b"]" * 200_000,
    b'{"email": "ada@example.com", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
]
MALFORMED_FORMS = [
    b"email=ada%40example.com&first_name=%FF",
    b"email=ada%40example.com&first_name=%ED%A0%80",
    b"email=ada\xff%40example.com",
    b"&".join(b"f%d=x" % n for n in range(1001)),
]


@pytest.mark.parametrize("name", EVERY)
async def test_malformed_json_is_refused_naming_the_body(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)

    await assert_each_refused(intake, [(body, {("body",)}) for body in MALFORMED], content_type=JSON)


@pytest.mark.parametrize("name", API)
async def test_json_the_api_cannot_read_is_refused_with_400(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)

    for body in [NOT_UTF_8, *NESTED_PAST_THE_PARSER]:
        before = await held(ingest)

        response = await intake.post(body)

        assert_problem(response, 400)
        await assert_nothing_stored(intake, before)


@pytest.mark.parametrize("name", HOOKS)
async def test_a_verified_webhook_that_cannot_be_read_is_refused_and_kept_in_quarantine(
    ingest: Ingest, name: str
) -> None:
    intake = await intake_for(ingest, name)
    # A standard-webhooks signature covers UTF-8 text: a body that is not UTF-8 never verifies (see below).
    unreadable = NESTED_PAST_THE_PARSER if name == "webhook" else [NOT_UTF_8, *NESTED_PAST_THE_PARSER]
    await assert_each_refused(intake, [(body, {("body",)}) for body in unreadable], content_type=JSON)
    if name == "form":
        await assert_each_refused(intake, [(body, {("body",)}) for body in MALFORMED_FORMS])


# wrong types

WRONG_TYPES: dict[str, list[tuple[dict[str, Any], tuple[str | int, ...]]]] = {
    "lead": [
        ({"email": 42}, ("email",)),
        ({"email": ["ada@example.com"]}, ("email",)),
        ({"first_name": 7}, ("first_name",)),
        ({"company_size": {"n": 1}}, ("company_size",)),
        ({"country": True}, ("country",)),
        ({"utm": ["utm_source"]}, ("utm",)),
        ({"utm": {"utm_source": 5}}, ("utm", "utm_source")),
        ({"activities": "demo_request"}, ("activities",)),
        ({"activities": [{"type": "click", "occurred_at": "yesterday"}]}, ("activities", 0, "occurred_at")),
        ({"activities": [{"type": "click", "properties": ["a"]}]}, ("activities", 0, "properties")),
    ],
    "form": [
        ({"email": ["ada@example.com", "bob@example.com"]}, ("email",)),
        ({"first_name": ["Ada", "Bob"]}, ("first_name",)),
        ({"company_size": "lots"}, ("company_size",)),
        ({"utm": "google"}, ("utm",)),
        ({"activities": "demo_request"}, ("activities",)),
    ],
    "activities": [
        ({"type": 5}, ("type",)),
        ({"occurred_at": "yesterday"}, ("occurred_at",)),
        ({"occurred_at": None}, ("occurred_at",)),
        ({"properties": ["page"]}, ("properties",)),
        ({"email": 42}, ("email",)),
        ({"email": None, "lead_id": 7}, ("lead_id",)),
    ],
}


@pytest.mark.parametrize("name", EVERY)
async def test_a_field_of_the_wrong_type_is_refused_naming_it(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    cases = WRONG_TYPES[name if name in ("form", "activities") else "lead"]
    if name == "webhook":
        # A vendor's number where Baton keeps text (a phone, an id) is taken as its text, so it is no wrong type there.
        cases = [(fields, field) for fields, field in cases if fields != {"first_name": 7}]

    await assert_each_refused(intake, [(intake.body(fields), {field}) for fields, field in cases])


@pytest.mark.parametrize("name", JSON_SHAPED)
async def test_a_body_that_is_not_an_object_is_refused(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    documents = [[{"email": "ada@example.com"}], "ada@example.com", 42, None]

    await assert_each_refused(intake, [(json.dumps(document).encode(), {("body",)}) for document in documents])


# huge bodies


def _over_a_mib(intake: Intake) -> bytes:
    padding = "x" * MIB
    if intake.name == "form":
        return urlencode({"email": "ada@example.com", "first_name": padding}).encode()
    return intake.body({"first_name": padding})


@pytest.mark.parametrize("name", EVERY)
async def test_a_body_over_1_mib_with_its_length_declared_is_refused_with_413(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    body = _over_a_mib(intake)
    before = await held(ingest)

    response = await intake.post(body)

    assert len(body) > MIB and response.request.headers["content-length"] == str(len(body))
    assert_problem(response, 413)
    await assert_nothing_stored(intake, before)


@pytest.mark.parametrize("name", EVERY)
async def test_a_body_over_1_mib_streamed_without_a_length_is_refused_with_413(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    body = _over_a_mib(intake)
    before = await held(ingest)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    headers = {**intake.headers(body), "content-type": FORM if name == "form" else JSON}
    response = await ingest.client.post(intake.path, content=chunks(), headers=headers)

    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413)
    await assert_nothing_stored(intake, before)


# unknown fields


@pytest.mark.parametrize("name", EVERY)
async def test_an_unknown_field_is_refused_naming_it(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    cases: list[Refusal] = [(intake.body({"nickname": "Ada"}), {("nickname",)})]
    if name in JSON_SHAPED and name != "activities":
        nested = intake.body({"activities": [{"type": "click", "score": 5}]})
        cases.append((nested, {("activities", 0, "score")}))
    if name == "batch":
        beside_the_leads = json.dumps({"leads": [{"email": "ada@example.com"}], "dry_run": True}).encode()
        cases.append((beside_the_leads, {("body", "dry_run")}))  # refuses the whole batch

    await assert_each_refused(intake, cases)


# bad signatures


def _raw_standard_signature(secret: str, webhook_id: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{int(NOW.timestamp())}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@pytest.mark.parametrize(
    "spoil",
    [
        "webhook-wrong-signature",
        "webhook-other-source-s-secret",
        "webhook-signed-another-body",
        "webhook-unsigned",
        "webhook-stale",
        "webhook-not-utf-8",
        "form-wrong-token",
        "form-no-token",
        "form-other-source-s-token",
        "form-token-in-a-header",
    ],
)
async def test_a_webhook_that_fails_verification_is_refused_and_nothing_of_it_kept(ingest: Ingest, spoil: str) -> None:
    name = spoil.partition("-")[0]
    intake = await intake_for(ingest, name)
    body = intake.body({"first_name": "Ada"})
    path, headers = intake.path, {**intake.headers(body), "content-type": JSON if name == "webhook" else FORM}
    other_webhooks = (await create_source(ingest, name="other"))["secret"]
    other_token = (await create_source(ingest, name="other-form", verification="url-token"))["secret"]
    match spoil.partition("-")[2]:
        case "wrong-signature":
            headers["webhook-signature"] = "v1," + base64.b64encode(b"\0" * 32).decode()
        case "other-source-s-secret":
            headers = {**signed(other_webhooks, body, webhook_id=headers["webhook-id"]), "content-type": JSON}
        case "signed-another-body":
            body = intake.body({"first_name": "Mallory"})
        case "unsigned":
            del headers["webhook-signature"]
        case "stale":
            headers["webhook-timestamp"] = str(int(NOW.timestamp()) - 301)
        case "not-utf-8":
            body = NOT_UTF_8
            headers["webhook-signature"] = _raw_standard_signature(
                intake.secrets["signed"], headers["webhook-id"], body
            )
        case "wrong-token":
            path = "/v1/sources/form/leads?token=" + "A" * len(intake.secrets["form"])
        case "no-token":
            path = "/v1/sources/form/leads"
        case "other-source-s-token":
            path = f"/v1/sources/form/leads?token={other_token}"
        case "token-in-a-header":
            path, headers["token"] = "/v1/sources/form/leads", intake.secrets["form"]
    before = await held(ingest)

    response = await ingest.client.post(path, content=body, headers=headers)

    assert_problem(response, 401)
    assert intake.secrets["form" if name == "form" else "signed"] not in response.text
    await assert_nothing_stored(intake, before)


# replays


@pytest.mark.parametrize("name", [*API, "webhook"])
async def test_a_replayed_request_gets_the_first_answer_and_nothing_new(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    body = intake.body({"first_name": "Ada"} if name != "activities" else {})
    first = await intake.post(body, key="replayed", webhook_id="msg_replayed")
    after_first = await held(ingest)

    again = await intake.post(body, key="replayed", webhook_id="msg_replayed")

    assert first.status_code in (200, 202), first.text
    assert (again.status_code, again.text) == (first.status_code, first.text)
    assert await held(ingest) == after_first
    assert len(after_first.events) == 2 and after_first.leads == 1 + (name != "activities")


@pytest.mark.parametrize("name", [*API, "webhook"])
async def test_a_replay_with_another_body_stores_nothing_new(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    if name == "activities":
        body, other = intake.body({}), intake.body({"type": "click"})
    else:
        body, other = intake.body({"first_name": "Ada"}), intake.body({"email": "bob@example.com"})
    first = await intake.post(body, key="replayed", webhook_id="msg_replayed")
    after_first = await held(ingest)

    again = await intake.post(other, key="replayed", webhook_id="msg_replayed")

    assert first.status_code in (200, 202), first.text
    if name == "webhook":  # the delivery id names the delivery: a retry of it, whatever its body, is answered alike
        assert (again.status_code, again.text) == (first.status_code, first.text)
    else:
        assert "'replayed'" in assert_problem(again, 422)["detail"]
    assert await held(ingest) == after_first


async def test_a_replayed_webhook_that_cannot_become_a_lead_is_answered_the_same_and_kept_once(ingest: Ingest) -> None:
    intake = await intake_for(ingest, "webhook")
    body = intake.body({"nickname": "Ada"})
    first = await intake.post(body, webhook_id="msg_replayed")
    after_first = await held(ingest)

    again = await intake.post(body, webhook_id="msg_replayed")

    assert_problem(first, 422)
    assert (again.status_code, again.text) == (422, first.text)
    assert await held(ingest) == after_first and after_first.quarantined == (body,)


async def test_a_resent_form_merges_into_its_lead_rather_than_making_another(ingest: Ingest) -> None:
    # A url-token form carries no delivery id: a resend is the same person again, merged with no change.
    intake = await intake_for(ingest, "form")
    body = intake.body({"first_name": "Ada"})
    first = await intake.post(body)

    again = await intake.post(body)

    assert again.json() == {**first.json(), "duplicate": True}
    now = await held(ingest)
    assert now.leads == 2 and now.quarantined == () and now.answers == ()
    updated = [event for event in await ingest.outbox() if event.type == UPDATED]
    assert [event.data["changed"] for event in updated] == [{}]


# unicode and injection strings


async def _post_text_everywhere(intake: Intake, value: str, email: str) -> tuple[httpx.Response, str | None]:
    """Posts ``value`` in every free-text field this endpoint takes; returns the answer and the lead's id."""
    if intake.name == "activities":
        response = await intake.post(intake.body({"properties": {value: value, "note": value}}))
        return response, response.json().get("lead_id")
    fields: dict[str, Any] = {"email": email, **dict.fromkeys(TEXT_FIELDS, value)}
    if intake.name != "form":
        fields |= {
            "source": value,
            "utm": {value: value},
            "activities": [{"type": value, "properties": {value: value}}],
        }
    response = await intake.post(intake.body(fields))
    answer = response.json()
    return response, answer["items"][0].get("lead_id") if intake.name == "batch" else answer.get("lead_id")


async def assert_each_stored_as_text(intake: Intake, values: list[str]) -> None:
    """Each value, in every free-text field, is taken and comes back byte for byte; the leads table is intact."""
    for index, value in enumerate(values):
        response, lead_id = await _post_text_everywhere(intake, value, f"text-{index}@example.com")

        assert response.status_code in (200, 202), response.text
        assert lead_id is not None
        events = await intake.ingest.outbox()
        if intake.name == "activities":
            assert events[-1].type == ACTIVITY and events[-1].data["properties"] == {value: value, "note": value}
            continue
        lead = await intake.ingest.client.get(f"/v1/leads/{lead_id}", headers=intake.ingest.token("leads:read"))
        assert lead.status_code == 200, lead.text
        read_back = lead.json()
        assert {field: read_back[field] for field in TEXT_FIELDS} == dict.fromkeys(TEXT_FIELDS, value)
        assert events[-1].type == RECEIVED and events[-1].data["first_name"] == value
        if intake.name != "form":
            assert read_back["utm"] == {value: value}
            assert read_back["source"] == (value if intake.name in API else "signed")
            [activity] = events[-1].data["activities"]
            assert (activity["type"], activity["properties"]) == (value, {value: value})
    async with intake.ingest.app.state.runtime.sessions() as session:
        leads = (await session.execute(text("SELECT count(*) FROM leads"))).scalar_one()
    assert leads == 1 + (len(values) if intake.name != "activities" else 0)


@pytest.mark.parametrize("name", EVERY)
async def test_injection_strings_are_stored_as_text_and_read_back_byte_identical(ingest: Ingest, name: str) -> None:
    await assert_each_stored_as_text(await intake_for(ingest, name), INJECTIONS)


async def test_an_injection_string_as_an_activity_s_lead_id_finds_no_lead_and_stores_nothing(ingest: Ingest) -> None:
    intake = await intake_for(ingest, "activities")
    before = await held(ingest)

    for value in INJECTIONS:
        response = await intake.post(intake.body({"email": None, "lead_id": value}))

        assert value in assert_problem(response, 404)["detail"]
    await assert_nothing_stored(intake, before)


@pytest.mark.parametrize("name", EVERY)
async def test_unicode_text_is_stored_and_read_back_unchanged(ingest: Ingest, name: str) -> None:
    await assert_each_stored_as_text(await intake_for(ingest, name), UNICODE)


def _holding(intake: Intake, character: str) -> Refusal:
    """A request holding the character in every string field, and the fields its refusal must name."""
    value = f"Ada{character}"
    fields: dict[str, Any] = {"email": f"ada{character}@example.com"}
    expected: set[tuple[str | int, ...]] = {("email",)}
    if intake.name == "activities":
        fields["type"] = value
        expected.add(("type",))
        fields["properties"] = {"note": value}
        # A lone surrogate fails the value's JSON type; a NUL fails the properties as a whole.
        expected.add(("properties", "note") if character != "\0" else ("properties",))
    else:
        fields |= dict.fromkeys(TEXT_FIELDS, value)
        expected |= {(field,) for field in TEXT_FIELDS}
        if intake.name != "form":
            fields |= {"utm": {"utm_source": value}, "activities": [{"type": value}]}
            expected |= {("utm", "utm_source"), ("activities", 0, "type")}
    if intake.name == "form" and character != "\0":
        # A form can carry a surrogate only as its UTF-8 bytes, which are never valid UTF-8.
        return b"email=ada%40example.com&first_name=Ada%ED%A0%80", {("body",)}
    # JSON as json.dumps writes it: the characters as the escapes `"\ud800"` and `"\u0000"`; a form's NUL is %00.
    return intake.body(fields), expected


@pytest.mark.parametrize("name", EVERY)
async def test_lone_surrogates_and_nul_are_refused_naming_every_field_holding_them(ingest: Ingest, name: str) -> None:
    intake = await intake_for(ingest, name)
    refusals = [_holding(intake, "\ud800"), _holding(intake, "\0")]

    assert all((b"\\u" in body) != (name == "form") for body, _ in refusals)
    await assert_each_refused(intake, refusals)
