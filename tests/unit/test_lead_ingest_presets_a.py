"""Vendor presets: Marketo, HubSpot forms, Meta and LinkedIn lead ads, Typeform — samples from their docs."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from baton.errors import Unprocessable
from baton_lead_ingest.presets import PRESETS, PresetLead

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendors"


def sample(preset: str) -> Any:
    return json.loads((SAMPLES / f"{preset}.json").read_text(encoding="utf-8"))


def only_lead(preset: str, body: Any) -> PresetLead:
    leads = PRESETS[preset](body)
    assert len(leads) == 1
    return leads[0]


EXPECTED: dict[str, dict[str, Any]] = {
    "marketo": {
        "email": "Dana.Whitfield@Northwind.example",
        "first_name": "Dana",
        "last_name": "Whitfield",
        "company": "Northwind Traders",
        "title": "VP Marketing",
        "phone": "+1 (415) 555-0142",
        "country": "United States",
        "campaign": "Q3 Webinar Follow-up",
        "utm": {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "q3-demand"},
        "external_id": "318581",
    },
    "hubspot-forms": {
        "email": "priya.raman@contoso.example",
        "first_name": "Priya",
        "last_name": "Raman",
        "company": "Contoso Ltd",
        "title": "Head of Revenue Operations",
        "phone": "020 7946 0958",
        "country": "United Kingdom",
        "campaign": "78c2891f-ebdd-44c0-bd94-15c012bbbfbf",
        "utm": {"utm_source": "linkedin", "utm_campaign": "emea-launch"},
        "external_id": "8f4e2a9c-1b7d-4c3e-9a51-6d0f2b7e3c14",
    },
    "meta-lead-ads": {
        "email": "m.okafor@fabrikam.example",
        "first_name": "Michael",
        "last_name": "Okafor",
        "company": "Fabrikam Inc",
        "title": "Director of IT",
        "phone": "+2348012345678",
        "country": "NG",
        "campaign": "23851234567890789",
        "external_id": "1289934755129831",
    },
    "linkedin-lead-gen": {
        "email": "sofia.lindqvist@adatum.example",
        "first_name": "Sofia",
        "last_name": "Lindqvist",
        "company": "Adatum AB",
        "title": "Chief Marketing Officer",
        "phone": "+46 8 123 456 78",
        "country": "Sweden",
        "campaign": "urn:li:sponsoredCampaign:197468923",
        "external_id": "fe5a3b6c-8c2d-4f0e-a3c1-77b9d2e4f001-4",
    },
    "typeform": {
        "email": "lucas.moreau@litware.example",
        "first_name": "Lucas",
        "last_name": "Moreau",
        "company": "Litware SA",
        "title": "Sales Director",
        "phone": "+33612345678",
        "country": "France",
        "campaign": "lT4Z3j",
        "utm": {"utm_source": "newsletter", "utm_campaign": "june-digest"},
        "external_id": "a3a12ec67a1365927098a606107fac15",
    },
}


def without_email(preset: str) -> Any:
    """The vendor's sample with the e-mail answer taken out, the way each vendor would omit it."""
    body = sample(preset)
    if preset == "marketo":
        del body["lead"]["email"]
    elif preset == "hubspot-forms":
        body["fields"] = [field for field in body["fields"] if field["name"] != "email"]
    elif preset == "meta-lead-ads":
        body["field_data"] = [answer for answer in body["field_data"] if answer["name"] != "email"]
    elif preset == "linkedin-lead-gen":
        answers = body["response"]["formResponse"]["answers"]
        body["response"]["formResponse"]["answers"] = [answer for answer in answers if answer["questionId"] != 3]
    else:
        answers = body["form_response"]["answers"]
        body["form_response"]["answers"] = [answer for answer in answers if answer["type"] != "email"]
    return body


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_vendor_sample_maps_to_exactly_the_canonical_fields(preset: str) -> None:
    lead = only_lead(preset, sample(preset))

    assert lead.fields == EXPECTED[preset]
    assert lead.external_id == EXPECTED[preset]["external_id"]


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_sample_without_email_maps_to_the_other_fields_and_no_email(preset: str) -> None:
    lead = only_lead(preset, without_email(preset))

    assert lead.fields == {name: value for name, value in EXPECTED[preset].items() if name != "email"}


def test_every_vendor_preset_is_registered_beside_the_form_presets() -> None:
    assert set(EXPECTED) <= set(PRESETS)


WRONG_SHAPES: list[tuple[str, Any, list[Any]]] = [
    ("marketo", {"email": "a@b.example"}, ["body", "lead"]),
    ("marketo", [], ["body", "lead"]),
    ("hubspot-forms", {"properties": {"email": "a@b.example"}}, ["body", "fields"]),
    ("hubspot-forms", {"fields": [{"value": "a@b.example"}]}, ["body", "fields", 0, "name"]),
    ("meta-lead-ads", {"id": "1", "fields": {"email": "a@b.example"}}, ["body", "field_data"]),
    ("meta-lead-ads", {"field_data": [{"name": "email", "values": "a@b.example"}]}, ["body", "field_data", 0]),
    ("meta-lead-ads", {"data": [{"id": "1"}]}, ["body", "data", 0, "field_data"]),
    ("linkedin-lead-gen", {"formResponse": {"answers": []}}, ["body", "response"]),
    ("linkedin-lead-gen", {"response": {"formResponse": {"answers": []}}}, ["body", "form"]),
    ("typeform", {"answers": []}, ["body", "form_response"]),
    ("typeform", {"form_response": {"answers": []}}, ["body", "form_response", "token"]),
    (
        "typeform",
        {"form_response": {"token": "t", "answers": [{"email": "a@b.example"}]}},
        ["body", "form_response", "answers", 0],
    ),
]


@pytest.mark.parametrize(("preset", "body", "loc"), WRONG_SHAPES)
def test_body_without_the_vendor_shape_is_refused_naming_what_is_missing(
    preset: str, body: Any, loc: list[Any]
) -> None:
    with pytest.raises(Unprocessable) as refused:
        PRESETS[preset](body)

    assert refused.value.extensions["errors"][0]["loc"] == loc
    assert preset in refused.value.detail
    assert ".".join(str(part) for part in loc[1:]) in refused.value.detail


def test_meta_leadgen_notification_is_refused_saying_the_lead_must_be_retrieved() -> None:
    notification = {
        "object": "page",
        "entry": [{"id": "1", "time": 1717243200, "changes": [{"field": "leadgen", "value": {"leadgen_id": "9"}}]}],
    }

    with pytest.raises(Unprocessable, match="carries only ids") as refused:
        PRESETS["meta-lead-ads"](notification)

    assert refused.value.extensions["errors"][0]["loc"] == ["body", "field_data"]


def test_meta_bulk_read_gives_one_lead_per_retrieved_lead() -> None:
    first = sample("meta-lead-ads")
    second = copy.deepcopy(first)
    second["id"] = "77"
    second["field_data"] = [{"name": "work_email", "values": ["second@fabrikam.example"]}]

    leads = PRESETS["meta-lead-ads"]({"data": [first, second]})

    assert [lead.external_id for lead in leads] == ["1289934755129831", "77"]
    assert leads[1].fields == {"email": "second@fabrikam.example", "campaign": "23851234567890789", "external_id": "77"}


def test_hubspot_submissions_api_values_and_conversion_id_are_read_like_a_submission() -> None:
    body = {
        "conversionId": "c-1",
        "values": [{"name": "email", "value": "x@y.example"}, {"name": "mobilephone", "value": "07700 900123"}],
    }

    lead = only_lead("hubspot-forms", body)

    assert lead.fields == {"email": "x@y.example", "phone": "07700 900123", "external_id": "c-1"}


def test_typeform_ref_named_like_a_field_wins_over_an_answer_of_that_kind() -> None:
    body = sample("typeform")
    body["form_response"]["answers"].insert(
        0, {"type": "email", "email": "billing@litware.example", "field": {"id": "Zz0", "type": "email", "ref": "x"}}
    )
    body["form_response"]["answers"].append(
        {"type": "email", "email": "chosen@litware.example", "field": {"id": "Yy9", "type": "email", "ref": "email"}}
    )

    assert only_lead("typeform", body).fields["email"] == "chosen@litware.example"


def test_typeform_blank_answer_is_left_out() -> None:
    body = sample("typeform")
    body["form_response"]["answers"][3]["text"] = ""

    assert "company" not in only_lead("typeform", body).fields


def test_linkedin_answers_to_custom_questions_map_to_no_field() -> None:
    body = sample("linkedin-lead-gen")
    body["response"]["formResponse"]["answers"].append(
        {"questionId": 8, "answerDetails": {"textQuestionAnswer": {"answer": "eleven"}}}
    )

    assert only_lead("linkedin-lead-gen", body).fields == EXPECTED["linkedin-lead-gen"]
