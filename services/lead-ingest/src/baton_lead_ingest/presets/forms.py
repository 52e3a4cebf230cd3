"""Form-builder presets: Unbounce pages, Salesforce Web-to-Lead and Pardot form handlers, Mautic webhooks.

Form posts arrive already decoded (``application/x-www-form-urlencoded`` as ``{name: value}``, a repeated
field as a list), Mautic's JSON as parsed JSON. Each preset returns the canonical fields as the vendor sent
them; normalising e-mail, phone and country is the intake's job. A blank form field is an unanswered one
and is left out, so it cannot overwrite what a lead already holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from baton.errors import Unprocessable
from baton_lead_ingest.presets import Preset, PresetLead

UTM_PARAMETERS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

UNBOUNCE_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email", "email_address"),
    "first_name": ("first_name", "firstname"),
    "last_name": ("last_name", "lastname"),
    "company": ("company", "company_name"),
    "title": ("title", "job_title"),
    "phone": ("phone", "phone_number"),
    "country": ("country",),
}
"""Canonical field → the Unbounce form field ids it is read from, first present wins.

Unbounce sends the form's own field ids; these are the ids its form builder gives the standard fields.
"""

WEB_TO_LEAD_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("first_name",),
    "last_name": ("last_name",),
    "company": ("company",),
    "title": ("title",),
    "phone": ("phone", "mobile"),
    "country": ("country", "country_code"),
    "campaign": ("Campaign_ID",),
}
"""Canonical field → Salesforce Web-to-Lead's standard Lead field names (``oid``, ``retURL`` and such are ignored)."""

PARDOT_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("first_name",),
    "last_name": ("last_name",),
    "company": ("company",),
    "title": ("job_title", "title"),
    "phone": ("phone",),
    "country": ("country",),
    "campaign": ("campaign_id", "campaign"),
}
"""Canonical field → the external field names a Pardot form handler is expected to map by default."""

MAUTIC_CONTACT_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("firstname",),
    "last_name": ("lastname",),
    "company": ("company",),
    "title": ("position",),
    "phone": ("phone", "mobile"),
    "country": ("country",),
}
"""Canonical field → Mautic's core contact field aliases."""

MAUTIC_FORM_RESULT_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "first_name": ("firstname", "first_name"),
    "last_name": ("lastname", "last_name"),
    "company": ("company",),
    "title": ("position", "job_title", "title"),
    "phone": ("phone", "mobile"),
    "country": ("country",),
}
"""Canonical field → the Mautic form field aliases a form submission's ``results`` are read from."""

MAUTIC_NEW_CONTACT = "mautic.lead_post_save_new"
MAUTIC_FORM_SUBMIT = "mautic.form_on_submit"


def shape_error(loc: Sequence[str | int], msg: str) -> Unprocessable:
    """Returns the error for a body that is not the vendor's documented shape, naming where it differs."""
    return Unprocessable(
        f"the body is not the expected payload: {msg}",
        errors=[{"loc": ["body", *loc], "msg": msg, "type": "preset_shape"}],
    )


def answered(value: Any) -> bool:
    """Whether a vendor value says something: neither missing nor blank."""
    return value is not None and not (isinstance(value, str) and not value.strip())


def form_fields(body: Any) -> Mapping[str, str | list[str]]:
    """Returns a decoded form post, refusing anything that is not ``{name: text or [text, ...]}``."""
    if not isinstance(body, Mapping):
        raise shape_error([], "a form post must be a set of named fields")
    for name, value in body.items():
        values = value if isinstance(value, list) else [value]
        if not isinstance(name, str) or not all(isinstance(item, str) for item in values):
            raise shape_error([str(name)], "a form field must be text or a list of texts")
    return body


def first_value(fields: Mapping[str, Any], name: str) -> Any:
    """Returns a field's value, the first answered one of a repeated field, or ``None``."""
    value = fields.get(name)
    values = value if isinstance(value, list) else [value]
    return next((item for item in values if answered(item)), None)


def mapped_fields(fields: Mapping[str, Any], field_names: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Returns the canonical fields found under their vendor names, the first answered name winning."""
    canonical: dict[str, Any] = {}
    for canonical_name, vendor_names in field_names.items():
        value = next(
            (found for name in vendor_names if (found := first_value(fields, name)) is not None),
            None,
        )
        if value is not None:
            canonical[canonical_name] = value
    return canonical


def utm_of(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the UTM parameters a form carried as hidden fields."""
    return {name: value for name in UTM_PARAMETERS if (value := first_value(fields, name)) is not None}


def with_utm(canonical: dict[str, Any], utm: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the canonical fields with ``utm`` added when there is any."""
    return {**canonical, "utm": dict(utm)} if utm else canonical


def preset_lead(canonical: Mapping[str, Any], external_id: str | None) -> PresetLead:
    """Returns a found lead, its vendor id both among its fields and apart for idempotent retries."""
    fields = dict(canonical) if external_id is None else {**canonical, "external_id": external_id}
    return PresetLead(fields=fields, external_id=external_id)


def unbounce_submission(fields: Mapping[str, str | list[str]]) -> dict[str, Any]:
    """Returns the ``data.json`` field of an Unbounce post: the form's answers, every value a list."""
    raw = first_value(fields, "data.json")
    if raw is None:
        raise shape_error(["data.json"], "an Unbounce post carries its answers in the data.json field")
    try:
        submission = json.loads(raw)
    except json.JSONDecodeError as error:
        raise shape_error(["data.json"], f"data.json is not JSON ({error.msg})") from error
    if not isinstance(submission, dict) or not all(isinstance(value, list) for value in submission.values()):
        raise shape_error(["data.json"], "data.json must be an object whose every value is a list")
    return submission


def unbounce_submission_id(page_id: Any, submission: Mapping[str, Any]) -> str | None:
    """Returns an id for one Unbounce submission, which its webhook does not carry.

    The page, the date and minute of capture and the address identify a submission well enough that a
    redelivery of it repeats the id; the address enters only hashed, so the id holds no personal data.
    """
    parts = [page_id, *(first_value(submission, name) for name in ("date_submitted", "time_submitted", "email"))]
    if not all(answered(part) for part in parts):
        return None
    return "unbounce-" + hashlib.sha256("\n".join(str(part) for part in parts).encode()).hexdigest()[:32]


def unbounce_leads(body: Any) -> list[PresetLead]:
    """Maps an Unbounce form-submit webhook: the page id as campaign, answers from ``data.json``."""
    fields = form_fields(body)
    submission = unbounce_submission(fields)
    canonical = mapped_fields(submission, UNBOUNCE_FIELDS)
    page_id = first_value(fields, "page_id") or first_value(submission, "page_uuid")
    if page_id is not None:
        canonical["campaign"] = page_id
    utm = utm_of(submission)
    return [preset_lead(with_utm(canonical, utm), unbounce_submission_id(page_id, submission))]


def web_to_lead_leads(body: Any) -> list[PresetLead]:
    """Maps a Salesforce Web-to-Lead form post; ``lead_source`` travels in ``utm`` as ``lead_source``."""
    fields = form_fields(body)
    utm = utm_of(fields)
    lead_source = first_value(fields, "lead_source")
    if lead_source is not None:
        utm["lead_source"] = lead_source
    # Web-to-Lead posts go straight from the visitor's browser; they carry no id of their own.
    return [preset_lead(with_utm(mapped_fields(fields, WEB_TO_LEAD_FIELDS), utm), None)]


def pardot_leads(body: Any) -> list[PresetLead]:
    """Maps a Pardot form handler post with the default external field names (see ``PARDOT_FIELDS``)."""
    fields = form_fields(body)
    return [preset_lead(with_utm(mapped_fields(fields, PARDOT_FIELDS), utm_of(fields)), None)]


def mapping_at(container: Any, key: str, loc: list[str | int]) -> Mapping[str, Any]:
    """Returns ``container[key]`` when it is an object, or raises naming ``loc``."""
    value = container.get(key) if isinstance(container, Mapping) else None
    if not isinstance(value, Mapping):
        raise shape_error([*loc, key], f"{key} must be an object")
    return value


def mautic_events(body: Mapping[str, Any], event_type: str) -> list[Mapping[str, Any]]:
    """Returns the events of one type in a Mautic post, which groups several events per type in a list."""
    events = body.get(event_type, [])
    if not isinstance(events, list) or not all(isinstance(event, Mapping) for event in events):
        raise shape_error([event_type], f"{event_type} must be a list of events")
    return events


def mautic_contact_fields(contact: Mapping[str, Any], loc: list[str | int]) -> dict[str, Any]:
    """Returns the canonical fields of a Mautic contact from ``fields.core.<alias>.value``."""
    core = mapping_at(mapping_at(contact, "fields", loc), "core", [*loc, "fields"])
    values = {alias: field.get("value") for alias, field in core.items() if isinstance(field, Mapping)}
    return mapped_fields(values, MAUTIC_CONTACT_FIELDS)


def mautic_new_contact(event: Mapping[str, Any], index: int) -> PresetLead:
    """Maps one new-contact event; Mautic before 2.9 named the contact ``lead``."""
    loc: list[str | int] = [MAUTIC_NEW_CONTACT, index]
    contact = mapping_at(event, "contact" if "contact" in event else "lead", loc)
    contact_id = contact.get("id")
    return preset_lead(
        mautic_contact_fields(contact, [*loc, "contact"]),
        str(contact_id) if answered(contact_id) else None,
    )


def mautic_form_submission(event: Mapping[str, Any], index: int) -> PresetLead:
    """Maps one form submission: its answers, the form id as campaign, the submission id as external id."""
    loc: list[str | int] = [MAUTIC_FORM_SUBMIT, index]
    submission = mapping_at(event, "submission", loc)
    results = mapping_at(submission, "results", [*loc, "submission"])
    canonical = mapped_fields(results, MAUTIC_FORM_RESULT_FIELDS)
    form = submission.get("form")
    if isinstance(form, Mapping) and answered(form.get("id")):
        canonical["campaign"] = str(form["id"])
    submission_id = submission.get("id")
    # Prefixed: a submission and a contact are numbered apart and may share a number.
    external_id = f"form-submission-{submission_id}" if answered(submission_id) else None
    return preset_lead(with_utm(canonical, utm_of(results)), external_id)


def mautic_leads(body: Any) -> list[PresetLead]:
    """Maps a Mautic webhook post: every new contact and every form submission it carries, in order.

    Other event types in the same post (page hits, e-mail opens, updates) bring no new lead and are passed over.
    """
    if not isinstance(body, Mapping) or not ({MAUTIC_NEW_CONTACT, MAUTIC_FORM_SUBMIT} & body.keys()):
        raise shape_error([], f"a Mautic post must carry {MAUTIC_NEW_CONTACT} or {MAUTIC_FORM_SUBMIT} events")
    contacts = [mautic_new_contact(event, i) for i, event in enumerate(mautic_events(body, MAUTIC_NEW_CONTACT))]
    submissions = [mautic_form_submission(event, i) for i, event in enumerate(mautic_events(body, MAUTIC_FORM_SUBMIT))]
    return contacts + submissions


FORM_PRESETS: dict[str, Preset] = {
    "unbounce": unbounce_leads,
    "salesforce-web-to-lead": web_to_lead_leads,
    "pardot": pardot_leads,
    "mautic": mautic_leads,
}
"""Form-builder presets by name."""
