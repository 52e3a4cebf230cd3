"""The canonical lead is normalised on intake: one e-mail key per person, alpha-2 countries, E.164 phones, head counts.

Driven through the HTTP API in-process on SQLite, and by properties of ``LeadIn``, the one call that turns canonical
fields (posted, or mapped from a vendor's payload) into a valid, normalised lead.
"""

from __future__ import annotations

import string
from typing import Any

import phonenumbers
import pycountry
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import func, select

from baton_lead_ingest.models import IdempotentAnswer
from baton_lead_ingest.schemas import LeadIn
from tests.unit.conftest import assert_problem
from tests.unit.test_lead_ingest_api import RECEIVED, UPDATED, Ingest, failing_fields
from tests.unit.test_lead_ingest_api import held_relay as held_relay  # noqa: F401 (a fixture)
from tests.unit.test_lead_ingest_api import ingest as ingest  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("held_relay")

PROPERTIES = settings(max_examples=200, deadline=None)


async def post(ingest: Ingest, lead: dict[str, Any], **headers: str) -> Any:
    return await ingest.client.post("/v1/leads", json=lead, headers={**ingest.writer(), **headers})


async def held(ingest: Ingest, lead_id: str) -> dict[str, Any]:
    response = await ingest.client.get(f"/v1/leads/{lead_id}", headers=ingest.token("leads:read"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def answers_held(ingest: Ingest) -> int:
    async with ingest.app.state.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(IdempotentAnswer)) or 0)


# e-mail: the dedupe key


async def test_one_address_in_another_case_and_with_spaces_around_it_is_one_lead(ingest: Ingest) -> None:
    first = await post(ingest, {"email": "Jane@Example.COM"})
    again = await post(ingest, {"email": " jane@example.com "})

    assert first.json()["duplicate"] is False
    assert again.json() == {"lead_id": first.json()["lead_id"], "status": "received", "duplicate": True}
    assert await ingest.lead_count() == 1
    assert (await held(ingest, first.json()["lead_id"]))["email"] == "jane@example.com"
    assert [(event.type, event.data.get("email")) for event in await ingest.outbox()] == [
        (RECEIVED, "jane@example.com"),
        (UPDATED, None),
    ]


async def test_punycode_and_unicode_spellings_of_a_domain_are_one_lead(ingest: Ingest) -> None:
    first = await post(ingest, {"email": "jane@xn--bcher-kva.de"})
    again = await post(ingest, {"email": "Jane@BÜCHER.de"})

    assert again.json() == {"lead_id": first.json()["lead_id"], "status": "received", "duplicate": True}
    assert (await held(ingest, first.json()["lead_id"]))["email"] == "jane@bücher.de"


async def test_activity_finds_its_lead_by_the_same_key_as_intake(ingest: Ingest) -> None:
    lead = await post(ingest, {"email": "jane@xn--bcher-kva.de"})

    response = await ingest.client.post(
        "/v1/activities",
        json={"email": " JANE@Bücher.de ", "type": "demo_request", "occurred_at": "2024-05-01T12:00:00Z"},
        headers=ingest.writer(),
    )

    assert response.status_code == 202, response.text
    assert response.json()["lead_id"] == lead.json()["lead_id"]


@pytest.mark.parametrize(
    "email",
    ["secret\x00person@example.com", "secret.person@b..com", "secret" + "p" * 294 + "@example.com"],
    ids=["nul", "empty-label", "300-character-local-part"],
)
async def test_address_that_is_not_one_is_refused_naming_email_and_nothing_is_kept(ingest: Ingest, email: str) -> None:
    response = await post(ingest, {"email": email, "first_name": "Jane"}, **{"Idempotency-Key": "form-7"})

    body = assert_problem(response, 422)
    assert [(error["loc"], error["type"]) for error in body["errors"]] == [(["body", "email"], "value_error")]
    assert "secret" not in response.text
    assert await ingest.lead_count() == 0
    assert await ingest.outbox() == []
    assert await answers_held(ingest) == 0


async def test_same_key_with_the_same_lead_written_another_way_is_the_same_request(ingest: Ingest) -> None:
    key = {"Idempotency-Key": "form-8"}
    first = await post(ingest, {"email": "jane@example.com", "country": "DE"}, **key)
    again = await post(ingest, {"email": "JANE@example.com ", "country": "Germany"}, **key)

    assert again.status_code == 202
    assert again.content == first.content
    assert [event.type for event in await ingest.outbox()] == [RECEIVED]


# country, phone, company size


@pytest.mark.parametrize("country", ["Germany", "DEU", "de", " germany "])
async def test_country_by_name_or_code_is_held_and_published_as_alpha_2(ingest: Ingest, country: str) -> None:
    response = await post(ingest, {"email": "jane@example.com", "country": country})

    assert (await held(ingest, response.json()["lead_id"]))["country"] == "DE"
    [event] = await ingest.outbox()
    assert event.data["country"] == "DE"


async def test_unknown_country_is_refused_naming_country_without_repeating_it(ingest: Ingest) -> None:
    response = await post(ingest, {"email": "jane@example.com", "country": "Atlantisland"})

    assert failing_fields(response) == {("body", "country")}
    assert "Atlantisland" not in response.text
    assert await ingest.lead_count() == 0


async def test_national_phone_number_is_read_in_the_leads_country_and_held_in_e164(ingest: Ingest) -> None:
    response = await post(ingest, {"email": "jane@example.com", "phone": "(415) 555-0100", "country": "US"})

    assert (await held(ingest, response.json()["lead_id"]))["phone"] == "+14155550100"
    [event] = await ingest.outbox()
    assert event.data["phone"] == "+14155550100"


async def test_national_phone_number_is_read_in_a_country_given_by_name(ingest: Ingest) -> None:
    response = await post(ingest, {"email": "jane@example.com", "phone": "030 1234567", "country": "Germany"})

    assert (await held(ingest, response.json()["lead_id"]))["phone"] == "+49301234567"


async def test_phone_without_digits_is_refused_naming_phone(ingest: Ingest) -> None:
    response = await post(ingest, {"email": "jane@example.com", "phone": "call me"})

    assert failing_fields(response) == {("body", "phone")}
    assert await ingest.lead_count() == 0


@pytest.mark.parametrize(("posted", "size"), [("51-200", 51), ("1,000+", 1000), (250.0, 250), (12, 12)])
async def test_company_size_band_or_number_is_held_as_a_head_count(ingest: Ingest, posted: object, size: int) -> None:
    response = await post(ingest, {"email": "jane@example.com", "company_size": posted})

    assert (await held(ingest, response.json()["lead_id"]))["company_size"] == size
    [event] = await ingest.outbox()
    assert event.data["company_size"] == size


@pytest.mark.parametrize("posted", [True, False, 2.5, "lots", -1])
async def test_company_size_that_is_no_head_count_is_refused_and_nothing_is_kept(
    ingest: Ingest, posted: object
) -> None:
    response = await post(ingest, {"email": "jane@example.com", "company_size": posted})

    assert failing_fields(response) == {("body", "company_size")}
    assert await ingest.lead_count() == 0
    assert await ingest.outbox() == []


async def test_batch_answers_a_bad_country_item_with_its_error_and_stores_the_good_one(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/leads:batch",
        json={
            "leads": [
                {"email": "ann@example.com", "country": "Atlantisland"},
                {"email": "Ben@Example.com", "country": "united kingdom", "company_size": "11-50"},
            ]
        },
        headers=ingest.writer(),
    )

    assert response.status_code == 200, response.text
    bad, good = response.json()["items"]
    assert (bad["index"], bad["status"]) == (0, 422)
    assert [(error["loc"], error["type"]) for error in bad["errors"]] == [(["country"], "value_error")]
    assert "Atlantisland" not in response.text
    assert (good["index"], good["status"], good["duplicate"]) == (1, 202, False)
    [event] = await ingest.outbox()
    assert (event.subject, event.data["email"], event.data["country"], event.data["company_size"]) == (
        good["lead_id"],
        "ben@example.com",
        "GB",
        11,
    )


# LeadIn: what a mapped vendor payload becomes


def test_mapped_vendor_fields_validate_to_a_normalised_lead() -> None:
    mapped = {
        "email": "  Jane.Doe@Example.COM",
        "first_name": "Jane",
        "phone": "020 7946 0018",
        "country": "United Kingdom",
        "company_size": "51-200",
        "external_id": "hubspot-submission-7",
    }

    lead = LeadIn.model_validate(mapped)

    assert (lead.email, lead.phone, lead.country, lead.company_size, lead.external_id) == (
        "jane.doe@example.com",
        "+442079460018",
        "GB",
        51,
        "hubspot-submission-7",
    )


def test_blank_phone_country_and_company_size_of_an_unanswered_form_are_absent() -> None:
    lead = LeadIn.model_validate({"email": "jane@example.com", "phone": " ", "country": "", "company_size": ""})

    assert (lead.phone, lead.country, lead.company_size) == (None, None, None)


def test_refusals_name_each_failing_field_and_never_carry_its_value_in_the_message() -> None:
    posted = {"email": "secret@b..com", "country": "secretland", "phone": "secret", "company_size": True}

    with pytest.raises(ValidationError) as refused:
        LeadIn.model_validate(posted)

    errors = refused.value.errors()
    assert {error["loc"] for error in errors} == {("email",), ("country",), ("phone",), ("company_size",)}
    assert not [error["msg"] for error in errors if "secret" in error["msg"] or "True" in error["msg"]]


# properties


def _case_flips(text: str, flips: list[bool]) -> str:
    return "".join(char.swapcase() if at < len(flips) and flips[at] else char for at, char in enumerate(text))


WRITTEN_FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
]
SPACE_AROUND = st.text(alphabet=" \t\r\n", max_size=3)
COUNTRY_SPELLINGS = st.sampled_from(sorted(pycountry.countries, key=lambda c: c.alpha_2)).flatmap(
    lambda country: st.sampled_from([country.alpha_2, country.alpha_3.lower(), country.name, country.name.upper()])
)


@st.composite
def phone_numbers(draw: st.DrawFn) -> str:
    """A phone number as people post them: a valid one in any format, or digits and punctuation of any kind."""
    region = draw(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
    number = phonenumbers.example_number(region)
    if number is not None and draw(st.booleans()):
        return phonenumbers.format_number(number, draw(st.sampled_from(WRITTEN_FORMATS)))
    return draw(
        st.text(alphabet=string.digits + " +-().x", max_size=30).filter(lambda text: any(map(str.isdigit, text)))
    )


def _is_an_address(email: str) -> bool:
    try:
        LeadIn(email=email)
    except ValidationError:
        return False
    return True


# Text a JSON body can carry and a lead keeps: no NUL, no lone surrogate (both refused, see the bad-input tests).
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)


@st.composite
def canonical_leads(draw: st.DrawFn) -> dict[str, Any]:
    """Valid canonical fields as a form or a field map may bring them: any case, spaces, names for codes, bands."""
    email = draw(SPACE_AROUND) + draw(st.emails()) + draw(SPACE_AROUND)
    assume(_is_an_address(email))  # the few generated addresses email-validator refuses, such as special-use domains
    lead: dict[str, Any] = {"email": email}
    optional = {
        "first_name": TEXT,
        "country": COUNTRY_SPELLINGS,
        "phone": phone_numbers(),
        "company_size": st.integers(0, 10_000_000) | st.sampled_from(["51-200", "1,000+", "10 employees", 250.0]),
        "utm": st.dictionaries(st.sampled_from(["utm_source", "utm_medium"]), TEXT, max_size=2),
        "external_id": TEXT,
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            lead[name] = draw(values)
    return lead


@PROPERTIES
@given(canonical_leads())
def test_a_normalised_lead_validates_to_itself(posted: dict[str, Any]) -> None:
    lead = LeadIn.model_validate(posted)

    assert LeadIn.model_validate(lead.model_dump()) == lead
    assert LeadIn.model_validate(lead.model_dump(mode="json")) == lead
    assert LeadIn.model_validate_json(lead.model_dump_json()) == lead


@PROPERTIES
@given(st.emails(), st.lists(st.booleans(), max_size=80), SPACE_AROUND, SPACE_AROUND)
def test_dedupe_key_of_an_address_ignores_its_case_and_the_spaces_around_it(
    address: str, flips: list[bool], before: str, after: str
) -> None:
    assert address.isascii()
    assume(_is_an_address(address))
    key = LeadIn(email=address).email

    assert LeadIn(email=before + _case_flips(address, flips) + after).email == key
    assert LeadIn(email=address.upper()).email == key


@PROPERTIES
@given(st.emails(), SPACE_AROUND, SPACE_AROUND)
def test_dedupe_key_of_an_ascii_address_without_punycode_is_the_trimmed_lower_cased_address(
    address: str, before: str, after: str
) -> None:
    # Leads stored before normalisation were keyed by the trimmed, lower-cased address: for these, the same key.
    assume("xn--" not in address.lower() and _is_an_address(address))

    assert LeadIn(email=before + address + after).email == address.lower()
