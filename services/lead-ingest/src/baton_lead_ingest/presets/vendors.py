"""Presets for marketing automation and ad lead forms: Marketo, HubSpot forms, Meta and LinkedIn lead ads, Typeform.

Each maps the vendor's documented payload to canonical lead fields as sent; normalising the values is a later step.
The shapes each preset accepts are documented beside the samples under ``tests/fixtures/vendors/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from baton.errors import Unprocessable
from baton_lead_ingest.presets import Preset, PresetLead

Loc = tuple[str | int, ...]


def _missing(preset: str, loc: Loc, what: str) -> Unprocessable:
    """The error for a body that lacks part of the vendor's shape, naming where."""
    path = ".".join(str(part) for part in loc)
    return Unprocessable(
        f"not a {preset} payload: {path} is missing or not {what}",
        errors=[{"loc": ["body", *loc], "msg": f"expected {what}", "type": "missing"}],
    )


def _mapping(body: Any, key: str, *, preset: str, loc: Loc = ()) -> Mapping[str, Any]:
    """The object under ``key``, or the error naming it."""
    value = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(value, Mapping):
        raise _missing(preset, (*loc, key), "an object")
    return value


def _list(body: Any, key: str, *, preset: str, loc: Loc = ()) -> list[Any]:
    """The list under ``key``, or the error naming it."""
    value = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(value, list):
        raise _missing(preset, (*loc, key), "a list")
    return value


def _identifier(value: Any) -> str | None:
    """A vendor id as text: vendors send numeric ids as numbers or strings."""
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, str | int) else None


def _lead(fields: Mapping[str, Any], utm: Mapping[str, Any], external_id: str | None) -> PresetLead:
    """A lead with only the fields the payload carried; ``external_id`` rides along as a canonical field too."""
    # A blank answer is an unanswered question: it must not overwrite what a lead already holds.
    canonical = {name: value for name, value in fields.items() if value not in (None, "")}
    if utm:
        canonical["utm"] = dict(utm)
    if external_id is not None:
        canonical["external_id"] = external_id
    return PresetLead(fields=canonical, external_id=external_id)


def _utm(values: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The ``utm_*`` parameters among named values, e.g. hidden form fields."""
    return {name: value for name, value in values if name.startswith("utm_") and value not in (None, "")}


def _first_present(*values: Any) -> Any:
    """The first value that is there, so a fallback field fills only a gap."""
    return next((value for value in values if value not in (None, "")), None)


# Marketo ---------------------------------------------------------------------------------------------------------

MARKETO_LEAD_FIELDS = {
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "company": "company",
    "title": "title",
    "phone": "phone",
    "country": "country",
}
"""Marketo's REST API names of lead fields (the names the documented payload template uses) → canonical fields."""


def marketo(body: Any) -> list[PresetLead]:
    """A Marketo webhook built from Baton's documented payload template: ``lead`` and, optionally, ``campaign``."""
    lead = _mapping(body, "lead", preset="marketo")
    campaign = body.get("campaign")
    campaign_name = _first_present(campaign.get("name"), campaign.get("id")) if isinstance(campaign, Mapping) else None
    fields = {canonical: lead.get(name) for name, canonical in MARKETO_LEAD_FIELDS.items()}
    fields["campaign"] = _identifier(campaign_name)
    return [_lead(fields, _utm(lead.items()), _identifier(lead.get("id")))]


# HubSpot forms ---------------------------------------------------------------------------------------------------

HUBSPOT_PROPERTIES = {
    "email": "email",
    "firstname": "first_name",
    "lastname": "last_name",
    "company": "company",
    "jobtitle": "title",
    "phone": "phone",
    "country": "country",
}
"""HubSpot's default contact property names → canonical fields; ``mobilephone`` fills a missing ``phone``."""


def hubspot_forms(body: Any) -> list[PresetLead]:
    """A HubSpot form submission: ``fields`` (or the submissions API's ``values``) as ``[{name, value}]``."""
    key = "values" if isinstance(body, Mapping) and "fields" not in body and "values" in body else "fields"
    submitted: dict[str, Any] = {}
    for index, field in enumerate(_list(body, key, preset="hubspot-forms")):
        if not isinstance(field, Mapping) or not isinstance(field.get("name"), str):
            raise _missing("hubspot-forms", (key, index, "name"), "a field name")
        submitted.setdefault(field["name"], field.get("value"))
    fields = {canonical: submitted.get(name) for name, canonical in HUBSPOT_PROPERTIES.items()}
    fields["phone"] = _first_present(fields["phone"], submitted.get("mobilephone"))
    fields["campaign"] = _identifier(_first_present(body.get("formId"), body.get("formGuid")))
    external_id = _identifier(_first_present(body.get("submissionId"), body.get("conversionId")))
    return [_lead(fields, _utm(submitted.items()), external_id)]


# Meta lead ads ---------------------------------------------------------------------------------------------------

META_FIELDS = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "company_name": "company",
    "job_title": "title",
    "phone_number": "phone",
    "country": "country",
}
"""Meta's standard lead-form question keys → canonical fields; ``work_email`` and ``work_phone_number`` fill gaps."""


def meta_lead_ads(body: Any) -> list[PresetLead]:
    """A Meta lead as the Graph API returns it (``field_data``), or a bulk read's ``data`` list of them."""
    if isinstance(body, Mapping) and "entry" in body and "field_data" not in body:
        # The leadgen webhook carries only ids; the answers must be fetched from the Graph API before posting.
        raise Unprocessable(
            "a Meta leadgen notification carries only ids (leadgen_id, form_id, ad_id); "
            "post the lead retrieved from the Graph API, with its field_data",
            errors=[{"loc": ["body", "field_data"], "msg": "expected the retrieved lead", "type": "missing"}],
        )
    if isinstance(body, Mapping) and "data" in body and "field_data" not in body:
        leads = _list(body, "data", preset="meta-lead-ads")
        return [_meta_lead(lead, ("data", index)) for index, lead in enumerate(leads)]
    return [_meta_lead(body, ())]


def _meta_lead(lead: Any, loc: Loc) -> PresetLead:
    """One retrieved Meta lead: ``field_data`` as ``[{name, values: [...]}]`` plus its ids."""
    answers: dict[str, Any] = {}
    for index, answer in enumerate(_list(lead, "field_data", preset="meta-lead-ads", loc=loc)):
        values = answer.get("values") if isinstance(answer, Mapping) else None
        if not isinstance(answer, Mapping) or not isinstance(answer.get("name"), str) or not isinstance(values, list):
            raise _missing("meta-lead-ads", (*loc, "field_data", index), "{name, values: [...]}")
        # A multi-select question answers with several values; a contact field with one.
        answers.setdefault(answer["name"], values[0] if len(values) == 1 else (values or None))
    fields = {canonical: answers.get(name) for name, canonical in META_FIELDS.items()}
    fields["email"] = _first_present(fields["email"], answers.get("work_email"))
    fields["phone"] = _first_present(fields["phone"], answers.get("work_phone_number"))
    fields["campaign"] = _identifier(_first_present(lead.get("campaign_id"), lead.get("form_id")))
    external_id = _identifier(_first_present(lead.get("id"), lead.get("leadgen_id")))
    return _lead(fields, _utm(answers.items()), external_id)


# LinkedIn lead gen forms -----------------------------------------------------------------------------------------

LINKEDIN_PREDEFINED_FIELDS = {
    "EMAIL": "email",
    "WORK_EMAIL": "email",
    "FIRST_NAME": "first_name",
    "LAST_NAME": "last_name",
    "COMPANY_NAME": "company",
    "JOB_TITLE": "title",
    "PHONE_NUMBER": "phone",
    "WORK_PHONE_NUMBER": "phone",
    "COUNTRY": "country",
}
"""LinkedIn's ``predefinedField`` of a form question → canonical fields; the first answer for a field wins."""


def linkedin_lead_gen(body: Any) -> list[PresetLead]:
    """A LinkedIn lead form response posted with its form: ``{"response": {...}, "form": {...}}``."""
    response = _mapping(body, "response", preset="linkedin-lead-gen")
    questions = _linkedin_questions(_mapping(body, "form", preset="linkedin-lead-gen"))
    form_response = _mapping(response, "formResponse", preset="linkedin-lead-gen", loc=("response",))
    answers_loc: Loc = ("response", "formResponse", "answers")
    fields: dict[str, Any] = {}
    for index, answer in enumerate(_list(form_response, "answers", preset="linkedin-lead-gen", loc=answers_loc[:-1])):
        if not isinstance(answer, Mapping) or _identifier(answer.get("questionId")) is None:
            raise _missing("linkedin-lead-gen", (*answers_loc, index, "questionId"), "a question id")
        canonical = questions.get(str(answer["questionId"]))
        text = _linkedin_text(answer)
        if canonical is not None and text is not None:
            fields.setdefault(canonical, text)
    metadata = response.get("leadMetadata")
    sponsored = metadata.get("sponsoredLeadMetadata") if isinstance(metadata, Mapping) else None
    campaign = sponsored.get("campaign") if isinstance(sponsored, Mapping) else None
    fields["campaign"] = _identifier(_first_present(campaign, response.get("versionedLeadGenFormUrn")))
    return [_lead(fields, {}, _identifier(response.get("id")))]


def _linkedin_questions(form: Mapping[str, Any]) -> dict[str, str]:
    """The form's question ids whose predefined field Baton knows → canonical field."""
    content = _mapping(form, "content", preset="linkedin-lead-gen", loc=("form",))
    known: dict[str, str] = {}
    for index, question in enumerate(_list(content, "questions", preset="linkedin-lead-gen", loc=("form", "content"))):
        question_id = _identifier(question.get("questionId")) if isinstance(question, Mapping) else None
        if question_id is None:
            raise _missing("linkedin-lead-gen", ("form", "content", "questions", index, "questionId"), "a question id")
        canonical = LINKEDIN_PREDEFINED_FIELDS.get(str(question.get("predefinedField")))
        if canonical is not None:
            known[question_id] = canonical
    return known


def _linkedin_text(answer: Mapping[str, Any]) -> Any:
    """The text of a free-text answer; choice answers carry option ids, which name no canonical field."""
    details = answer.get("answerDetails")
    text_answer = details.get("textQuestionAnswer") if isinstance(details, Mapping) else None
    return text_answer.get("answer") if isinstance(text_answer, Mapping) else None


# Typeform --------------------------------------------------------------------------------------------------------

TYPEFORM_REFS = ("email", "first_name", "last_name", "company", "title", "phone", "country", "campaign")
"""Question refs that name a canonical field directly; set them in the form builder."""

TYPEFORM_ANSWER_KINDS = {"email": "email", "phone_number": "phone"}
"""Answer types that identify a field even when the question's ref is not a canonical name."""


def typeform(body: Any) -> list[PresetLead]:
    """A Typeform webhook: ``form_response.answers`` found by ``field.ref``, else by answer type."""
    form_response = _mapping(body, "form_response", preset="typeform")
    token = _identifier(form_response.get("token"))
    if token is None:
        raise _missing("typeform", ("form_response", "token"), "the response token")
    by_ref: dict[str, Any] = {}
    by_kind: dict[str, Any] = {}
    answers = _list(form_response, "answers", preset="typeform", loc=("form_response",))
    for index, answer in enumerate(answers):
        field = answer.get("field") if isinstance(answer, Mapping) else None
        if not isinstance(field, Mapping) or not isinstance(answer.get("type"), str):
            raise _missing("typeform", ("form_response", "answers", index), "an answer with type and field")
        value = _typeform_value(answer)
        if field.get("ref") in TYPEFORM_REFS:
            by_ref.setdefault(field["ref"], value)
        elif answer["type"] in TYPEFORM_ANSWER_KINDS:
            by_kind.setdefault(TYPEFORM_ANSWER_KINDS[answer["type"]], value)
    fields = {name: _first_present(by_ref.get(name), by_kind.get(name)) for name in TYPEFORM_REFS}
    hidden = form_response.get("hidden")
    hidden_values = hidden.items() if isinstance(hidden, Mapping) else ()
    fields["campaign"] = _first_present(fields["campaign"], _identifier(form_response.get("form_id")))
    return [_lead(fields, _utm(hidden_values), token)]


def _typeform_value(answer: Mapping[str, Any]) -> Any:
    """The value of an answer, read from the key its type names; a choice answers with its label."""
    if answer["type"] == "choice":
        choice = answer.get("choice")
        return _first_present(choice.get("label"), choice.get("other")) if isinstance(choice, Mapping) else None
    if answer["type"] == "choices":
        choices = answer.get("choices")
        return choices.get("labels") if isinstance(choices, Mapping) else None
    return answer.get(answer["type"])


VENDOR_PRESETS: dict[str, Preset] = {
    "marketo": marketo,
    "hubspot-forms": hubspot_forms,
    "meta-lead-ads": meta_lead_ads,
    "linkedin-lead-gen": linkedin_lead_gen,
    "typeform": typeform,
}
"""Marketing-automation and ad lead-form presets by name."""
