"""Form-builder presets: Unbounce, Salesforce Web-to-Lead, Pardot and Mautic samples to canonical fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baton.errors import Unprocessable
from baton_lead_ingest.presets import PRESETS, PresetLead

VENDORS = Path(__file__).resolve().parents[1] / "fixtures" / "vendors"


def decoded_form(raw: str) -> dict[str, str | list[str]]:
    """Decodes a urlencoded body as intake does: a repeated field becomes a list."""
    fields: dict[str, str | list[str]] = {}
    for name, value in parse_qsl(raw.strip(), keep_blank_values=True):
        held = fields.get(name)
        fields[name] = value if held is None else [*([held] if isinstance(held, str) else held), value]
    return fields


def sample_form(preset: str) -> dict[str, str | list[str]]:
    return decoded_form((VENDORS / f"{preset}.txt").read_text())


def sample_json(preset: str) -> Any:
    return json.loads((VENDORS / f"{preset}.json").read_text())


def only_lead(leads: list[PresetLead]) -> PresetLead:
    assert len(leads) == 1
    return leads[0]


def shape_error_locs(preset: str, body: Any) -> list[list[Any]]:
    with pytest.raises(Unprocessable) as raised:
        PRESETS[preset](body)
    return [error["loc"] for error in raised.value.extensions["errors"]]


def test_form_presets_are_registered_by_their_product_names() -> None:
    assert {"unbounce", "salesforce-web-to-lead", "pardot", "mautic"} <= PRESETS.keys()


# Unbounce


def test_unbounce_sample_maps_every_canonical_field_from_data_json() -> None:
    lead = only_lead(PRESETS["unbounce"](sample_form("unbounce")))

    assert lead.fields == {
        "email": "ana.souza@example.com",
        "first_name": "Ana",
        "last_name": "Souza",
        "company": "Example Logistics",
        "title": "Head of Operations",
        "phone": "+55 11 3456-7890",
        "country": "Brazil",
        "campaign": "a2838d98-4cf4-11df-a3fd-00163e372d58",
        "utm": {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "q3-freight"},
        "external_id": lead.external_id,
    }
    assert lead.external_id is not None
    assert lead.external_id.startswith("unbounce-")
    assert "ana.souza" not in lead.external_id


def with_data_json(body: dict[str, str | list[str]], **changes: list[str]) -> dict[str, str | list[str]]:
    data = json.loads(str(body["data.json"]))
    return {**body, "data.json": json.dumps({**data, **changes})}


def test_unbounce_redelivery_repeats_the_external_id_and_another_submission_does_not() -> None:
    body = sample_form("unbounce")
    first = only_lead(PRESETS["unbounce"](body)).external_id
    redelivered = only_lead(PRESETS["unbounce"](decoded_form(urlencode(body)))).external_id
    a_minute_later = only_lead(PRESETS["unbounce"](with_data_json(body, time_submitted=["10:58 PM UTC"])))

    assert redelivered == first
    assert a_minute_later.external_id not in (None, first)


def test_unbounce_submission_without_capture_time_has_no_external_id() -> None:
    body = sample_form("unbounce")
    data = json.loads(str(body["data.json"]))
    del data["time_submitted"]

    lead = only_lead(PRESETS["unbounce"]({**body, "data.json": json.dumps(data)}))

    assert lead.external_id is None
    assert "external_id" not in lead.fields
    assert lead.fields["email"] == "ana.souza@example.com"


def test_unbounce_falls_back_to_page_uuid_when_the_post_has_no_page_id() -> None:
    body = {name: value for name, value in sample_form("unbounce").items() if name != "page_id"}

    lead = only_lead(PRESETS["unbounce"](body))

    assert lead.fields["campaign"] == "a2838d98-4cf4-11df-a3fd-00163e372d58"


@pytest.mark.parametrize(
    ("data_json", "reason"),
    [
        (None, "absent"),
        ("{not json", "not JSON"),
        ('["a@b.com"]', "not an object"),
        ('{"email": "a@b.com"}', "a value that is not a list"),
    ],
)
def test_unbounce_post_without_usable_data_json_is_refused_naming_the_field(data_json: str | None, reason: str) -> None:
    body = {name: value for name, value in sample_form("unbounce").items() if name != "data.json"}
    if data_json is not None:
        body["data.json"] = data_json

    assert shape_error_locs("unbounce", body) == [["body", "data.json"]], reason


# Salesforce Web-to-Lead


def test_web_to_lead_sample_maps_standard_field_names_and_ignores_oid_and_return_url() -> None:
    lead = only_lead(PRESETS["salesforce-web-to-lead"](sample_form("salesforce-web-to-lead")))

    assert lead.fields == {
        "email": "grace.hopper@example.org",
        "first_name": "Grace",
        "last_name": "Hopper",
        "company": "Example Compilers Ltd",
        "title": "VP Engineering",
        "phone": "(415) 555-0142",
        "country": "United States",
        "campaign": "7015g000000AbCdEAA",
        "utm": {"lead_source": "Web"},
    }
    assert lead.external_id is None


def test_web_to_lead_blank_fields_stay_absent() -> None:
    body = {**sample_form("salesforce-web-to-lead"), "title": "", "phone": "  ", "lead_source": ""}

    lead = only_lead(PRESETS["salesforce-web-to-lead"](body))

    assert "title" not in lead.fields
    assert "phone" not in lead.fields
    assert "utm" not in lead.fields


# Pardot


def test_pardot_sample_maps_the_default_form_handler_names() -> None:
    lead = only_lead(PRESETS["pardot"](sample_form("pardot")))

    assert lead.fields == {
        "email": "k.tanaka@example.jp",
        "first_name": "Kenji",
        "last_name": "Tanaka",
        "company": "Example Robotics KK",
        "title": "CTO",
        "phone": "03-1234-5678",
        "country": "JP",
        "campaign": "pardot-campaign-4411",
        "utm": {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "robotics-webinar"},
    }
    assert lead.external_id is None


def test_pardot_repeated_field_gives_its_first_answered_value() -> None:
    lead = only_lead(PRESETS["pardot"]({"email": ["", "first@example.com", "second@example.com"]}))

    assert lead.fields == {"email": "first@example.com"}


@pytest.mark.parametrize("preset", ["unbounce", "salesforce-web-to-lead", "pardot"])
@pytest.mark.parametrize("body", [["email=a@b.com"], "email=a@b.com", None])
def test_form_preset_refuses_a_body_that_is_not_a_form(preset: str, body: Any) -> None:
    assert shape_error_locs(preset, body) == [["body"]]


@pytest.mark.parametrize("preset", ["salesforce-web-to-lead", "pardot"])
def test_form_preset_refuses_a_field_that_is_not_text(preset: str) -> None:
    assert shape_error_locs(preset, {"email": {"value": "a@b.com"}}) == [["body", "email"]]


form_text = st.text(max_size=20)


@settings(max_examples=100, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["email", "first_name", "last_name", "company", "title", "job_title", "phone", "oid", "x"]),
        st.one_of(form_text, st.lists(form_text, max_size=3)),
    )
)
def test_any_form_post_gives_one_lead_of_answered_text_values(body: dict[str, str | list[str]]) -> None:
    for preset in ("salesforce-web-to-lead", "pardot"):
        lead = only_lead(PRESETS[preset](body))
        values = [value for name, value in lead.fields.items() if name != "utm"]
        assert all(isinstance(value, str) and value.strip() for value in values)
        assert set(lead.fields) <= {"email", "first_name", "last_name", "company", "title", "phone"}


# Mautic


def test_mautic_post_with_several_new_contacts_and_a_form_submission_gives_every_lead_in_order() -> None:
    leads = PRESETS["mautic"](sample_json("mautic"))

    assert leads == [
        PresetLead(
            fields={
                "email": "lena.fischer@example.de",
                "first_name": "Lena",
                "last_name": "Fischer",
                "company": "Beispiel GmbH",
                "title": "Marketing Director",
                "phone": "+49 30 901820",
                "country": "Germany",
                "external_id": "1841",
            },
            external_id="1841",
        ),
        PresetLead(
            fields={
                "email": "marco.rossi@example.it",
                "first_name": "Marco",
                "last_name": "Rossi",
                "phone": "+39 347 1234567",
                "country": "Italy",
                "external_id": "1842",
            },
            external_id="1842",
        ),
        PresetLead(
            fields={
                "email": "priya.nair@example.in",
                "first_name": "Priya",
                "last_name": "Nair",
                "company": "Example Analytics Pvt Ltd",
                "title": "Data Lead",
                "phone": "+91 22 4000 1234",
                "country": "India",
                "campaign": "25",
                "utm": {"utm_campaign": "demo-june"},
                "external_id": "form-submission-893",
            },
            external_id="form-submission-893",
        ),
    ]


def test_mautic_contact_named_lead_by_older_versions_is_read_too() -> None:
    body = {
        "mautic.lead_post_save_new": [
            {"lead": {"id": 25, "fields": {"core": {"email": {"value": "old@example.com"}}}}},
        ]
    }

    assert PRESETS["mautic"](body) == [
        PresetLead(fields={"email": "old@example.com", "external_id": "25"}, external_id="25")
    ]


def test_mautic_post_of_only_other_events_is_refused() -> None:
    body = {"mautic.page_on_hit": sample_json("mautic")["mautic.page_on_hit"]}

    assert shape_error_locs("mautic", body) == [["body"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ([{"contact": {}}], ["body"]),
        ({"mautic.lead_post_save_new": {"contact": {}}}, ["body", "mautic.lead_post_save_new"]),
        (
            {"mautic.lead_post_save_new": [{"contact": {"id": 1}}]},
            ["body", "mautic.lead_post_save_new", 0, "contact", "fields"],
        ),
        (
            {"mautic.lead_post_save_new": [{"contact": {"id": 1, "fields": {"core": []}}}]},
            ["body", "mautic.lead_post_save_new", 0, "contact", "fields", "core"],
        ),
        (
            {"mautic.form_on_submit": [{"submission": {"id": 3}}]},
            ["body", "mautic.form_on_submit", 0, "submission", "results"],
        ),
        ({"mautic.form_on_submit": [{}]}, ["body", "mautic.form_on_submit", 0, "submission"]),
    ],
)
def test_mautic_foreign_shape_is_refused_naming_where_it_differs(body: Any, loc: list[Any]) -> None:
    assert shape_error_locs("mautic", body) == [loc]
