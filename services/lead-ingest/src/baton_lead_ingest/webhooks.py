"""Webhook intake: a verified delivery's body becomes canonical leads by its source's preset and field map, or is
kept in quarantine with the reason until the map is fixed and it is replayed."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import Message
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, ValidationError
from sqlalchemy import Text, cast, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from baton.errors import Conflict, NotFound, Unprocessable
from baton.events import LeadErased
from baton.outbox import add_events
from baton.web import PROBLEM_JSON
from baton_lead_ingest.domain import PROFILE_FIELDS
from baton_lead_ingest.field_map import apply_field_map, parse_form
from baton_lead_ingest.models import ErasedLead, IdempotentAnswer, Lead, QuarantinedPayload, Source
from baton_lead_ingest.normalise import InvalidLeadValue, normalise_email
from baton_lead_ingest.presets import PERSON_ID_PRESETS, PRESETS, PresetLead
from baton_lead_ingest.schemas import LeadIn
from baton_lead_ingest.service import (
    Answer,
    IdempotencyKey,
    Intake,
    IntakeResult,
    find_answers,
    store_intakes,
    write_retrying,
)
from baton_lead_ingest.sources import SourceConfig

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_DELIVERY_KEY_LENGTH = 300
MAX_CONTENT_TYPE_LENGTH = 200
TEXT_FIELDS = frozenset(PROFILE_FIELDS) - {"company_size"}
"""Canonical fields held as text, which vendors' payloads may carry as numbers."""
# Headers that prove or carry identity are never kept with a quarantined payload.
_SECRET_HEADER_WORDS = ("signature", "authorization", "cookie", "token", "secret", "key", "auth", "password")


@dataclass(frozen=True)
class LeadMapping:
    """How a source's payload becomes leads: its name, preset, field map and default campaign."""

    source: str
    preset: str | None
    field_map: Mapping[str, str] | None
    default_campaign: str | None

    @classmethod
    def of(cls, source: Source | SourceConfig) -> LeadMapping:
        """The mapping a source is configured with now."""
        return cls(source.name, source.preset, source.field_map, source.default_campaign)


@dataclass(frozen=True)
class Delivery:
    """A verified webhook request as received: what is kept of it if it cannot become a lead."""

    source: str
    content_type: str | None
    body: bytes
    headers: Mapping[str, str]
    received_at: datetime
    webhook_id: str | None


class NotALead(Unprocessable):
    """A verified payload that cannot become a lead; ``email_normalized`` is who it is about, when that is known."""

    def __init__(self, detail: str, *, errors: list[dict[str, Any]], email_normalized: str | None = None) -> None:
        super().__init__(detail, errors=errors)
        self.email_normalized = email_normalized


@dataclass(frozen=True)
class MappedLeads:
    """The canonical leads a payload carries and the key that makes its retried delivery idempotent, if any."""

    leads: list[LeadIn]
    delivery_key: str | None


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers worth keeping with a quarantined payload: none that proves identity or carries a secret."""
    return {
        name.lower(): value
        for name, value in headers.items()
        if not any(word in name.lower() for word in _SECRET_HEADER_WORDS)
    }


def parse_body(body: bytes, content_type: str | None) -> Any:
    """Parses a webhook body: a urlencoded form (a repeated field becomes a list) or JSON.

    Raises:
        NotALead: The body is neither.
    """
    media_type, charset = _media_type(content_type)
    if media_type == FORM_CONTENT_TYPE:
        try:
            return parse_form(body, charset=charset or "utf-8")
        except Unprocessable as error:
            raise NotALead(error.detail, errors=error.extensions.get("errors", [])) from None
    try:
        return json.loads(body)
    except RecursionError:
        msg = "the JSON nests too deeply to be read"
        raise NotALead(
            f"The body cannot be parsed: {msg}.", errors=[{"loc": ["body"], "msg": msg, "type": "body.too_deep"}]
        ) from None
    except (UnicodeDecodeError, ValueError):
        msg = "the body is not JSON" if media_type in (None, "application/json") else f"{media_type} is not supported"
        raise NotALead(
            f"The body cannot be parsed: {msg}; send JSON or {FORM_CONTENT_TYPE}.",
            errors=[{"loc": ["body"], "msg": msg, "type": "body.unparseable"}],
        ) from None


def _media_type(content_type: str | None) -> tuple[str | None, str | None]:
    if not content_type:
        return None, None
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    return message.get_content_type(), charset if isinstance(charset, str) else None


def map_leads(mapping: LeadMapping, body: Any, *, webhook_id: str | None) -> MappedLeads:
    """Turns a parsed body into canonical leads by the source's preset and field map (or as the canonical shape).

    Every lead of a payload must be valid for any of it to be taken: a payload is kept whole or quarantined whole.

    Raises:
        NotALead: The body does not fit the preset, the map fails, or a lead is not valid; errors name where.
    """
    found = _preset_leads(mapping, body)
    if mapping.field_map:
        try:
            fields = [apply_field_map(body, mapping.field_map, base=lead.fields) for lead in found]
        except Unprocessable as error:
            raise NotALead(f"The source's field map fails: {error.detail}", errors=_errors(error)) from None
    else:
        fields = [dict(lead.fields) for lead in found]
    leads = [
        _canonical(mapping, lead_fields, index, several=len(fields) > 1) for index, lead_fields in enumerate(fields)
    ]
    return MappedLeads(leads=leads, delivery_key=_delivery_key(mapping, found, webhook_id))


def _preset_leads(mapping: LeadMapping, body: Any) -> list[PresetLead]:
    if mapping.preset is None:
        if not isinstance(body, dict):
            raise NotALead(
                "The body is not a lead: with no preset it must be a JSON object in the canonical lead shape.",
                errors=[{"loc": ["body"], "msg": "expected a JSON object", "type": "body.not_an_object"}],
            )
        # With a field map alone, the map builds the lead from nothing; without one the body is the lead.
        return [PresetLead(fields={} if mapping.field_map else dict(body), external_id=None)]
    try:
        found = PRESETS[mapping.preset](body)
    except Unprocessable as error:
        raise NotALead(error.detail, errors=_errors(error)) from None
    if not found:
        raise NotALead(
            f"The {mapping.preset} payload carries no lead.",
            errors=[{"loc": ["body"], "msg": "no lead in the payload", "type": "body.no_lead"}],
        )
    return found


def _as_text(value: Any) -> Any:
    """A number a vendor sends where Baton keeps text (a phone, an id) as that text; anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _canonical(mapping: LeadMapping, fields: dict[str, Any], index: int, *, several: bool) -> LeadIn:
    for name in TEXT_FIELDS.intersection(fields):
        fields[name] = _as_text(fields[name])
    fields["source"] = mapping.source
    if not fields.get("campaign") and mapping.default_campaign:
        fields["campaign"] = mapping.default_campaign
    where: list[str | int] = ["leads", index] if several else []
    email = _email_key(fields.get("email"))
    if fields.get("email") in (None, ""):
        raise NotALead(
            "No e-mail address after mapping the payload: the preset or field map finds none.",
            errors=[{"loc": [*where, "email"], "msg": "no e-mail address found", "type": "missing"}],
        )
    try:
        return LeadIn.model_validate(fields)
    except ValidationError as invalid:
        errors = [{"loc": [*where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in invalid.errors()]
        named = ", ".join(".".join(str(part) for part in error["loc"]) for error in errors)
        raise NotALead(f"The mapped lead is not valid: {named}.", errors=errors, email_normalized=email) from None


def _email_key(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return normalise_email(value)
    except InvalidLeadValue:
        return None


def _delivery_key(mapping: LeadMapping, found: Sequence[PresetLead], webhook_id: str | None) -> str | None:
    """The key a retried delivery repeats: the ``webhook-id``, else the vendor's ids of every lead it carries.

    A vendor's id counts only where it names the submission rather than the person (``PERSON_ID_PRESETS``).
    """
    if webhook_id is not None:
        return _bounded("webhook:", webhook_id)
    if mapping.preset is None or mapping.preset in PERSON_ID_PRESETS:
        return None
    ids = [lead.external_id for lead in found]
    if any(external_id is None for external_id in ids):
        return None
    return _bounded("vendor:", "|".join(str(external_id) for external_id in ids))


def _bounded(prefix: str, key: str) -> str:
    text = prefix + key
    if len(text) <= MAX_DELIVERY_KEY_LENGTH:
        return text
    return prefix + "sha256:" + hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()


def delivery_caller(source: str) -> str:
    """Who a source's delivery keys belong to, beside the bearer tokens' own Idempotency-Keys."""
    return f"source:{source}"


def delivery_intake_key(source: str, delivery_key: str) -> IdempotencyKey:
    """A delivery key as an idempotency key: any body with the same key repeats the first answer."""
    return IdempotencyKey(
        caller=delivery_caller(source), key=delivery_key, request_hash=hashlib.sha256(delivery_key.encode()).hexdigest()
    )


def _errors(error: Unprocessable) -> list[dict[str, Any]]:
    errors = error.extensions.get("errors")
    return list(errors) if isinstance(errors, list) else []


# Quarantine ------------------------------------------------------------------------------------------------------


class QuarantinedSummary(BaseModel):
    """A quarantined payload in a list: why it could not become a lead, and whether it was replayed."""

    id: int
    source: str
    reason: str
    errors: list[dict[str, Any]]
    content_type: str | None
    received_at: AwareDatetime
    replayed_at: AwareDatetime | None
    lead_ids: list[str] | None = Field(description="The leads it became when it was replayed.")


class QuarantinedPayloadOut(QuarantinedSummary):
    """A quarantined payload whole: its raw body and the headers kept (none that proves identity)."""

    body: str = Field(description="The body as received; base64 when `body_encoding` says so.")
    body_encoding: str = Field(description="`utf-8`, or `base64` for a body that is not UTF-8.")
    headers: dict[str, str]


def _stored_body(body: bytes) -> tuple[str, str]:
    """The body as a text column holds it: UTF-8 as is, else base64 (PostgreSQL's text cannot hold NUL either)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        return base64.b64encode(body).decode("ascii"), "base64"
    return text, "utf-8"


def _storable(text: str) -> str:
    """Text a reason or error may quote from the body, with NUL (which PostgreSQL's text cannot hold) escaped."""
    return text.replace("\x00", "\\u0000")


def _raw_body(payload: QuarantinedPayload) -> bytes:
    if payload.body_encoding == "base64":
        return base64.b64decode(payload.body)
    return payload.body.encode("utf-8")


def _quarantine_answer(payload_id: int, error: NotALead) -> Answer:
    body = {
        "type": "about:blank",
        "title": "Unprocessable content",
        "status": 422,
        "detail": f"{error.detail} The payload is kept in quarantine as {payload_id}.",
        "errors": _errors(error),
        "quarantine_id": payload_id,
    }
    return Answer(status=422, body=json.dumps(body, separators=(",", ":")))


async def store_quarantined(
    session: AsyncSession, *, delivery: Delivery, error: NotALead, delivery_key: str | None
) -> IntakeResult:
    """Keeps a payload that cannot become a lead and answers 422; a retried delivery gets the same answer."""
    key = delivery_intake_key(delivery.source, delivery_key) if delivery_key is not None else None
    if key is not None:
        held = await find_answers(session, keys=[key])
        if (key.caller, key.key) in held:
            return replace(held[(key.caller, key.key)].answer, repeated=True)
    body, encoding = _stored_body(delivery.body)
    payload = QuarantinedPayload(
        source=delivery.source,
        reason=_storable(error.detail),
        errors=_errors(error),
        content_type=delivery.content_type[:MAX_CONTENT_TYPE_LENGTH] if delivery.content_type else None,
        body=body,
        body_encoding=encoding,
        headers=dict(delivery.headers),
        delivery_key=delivery_key,
        email_normalized=error.email_normalized,
        received_at=delivery.received_at,
    )
    session.add(payload)
    await session.flush()
    answer = _quarantine_answer(payload.id, error)
    if key is not None:
        # A concurrent retry that commits first makes this fail; the retry of this write then finds its answer.
        session.add(
            IdempotentAnswer(
                caller=key.caller,
                key=key.key,
                request_hash=key.request_hash,
                status=answer.status,
                body=answer.body,
                created_at=delivery.received_at,
            )
        )
        await session.flush()
    return answer


async def commit_quarantined(
    sessions: async_sessionmaker[AsyncSession], *, delivery: Delivery, error: NotALead
) -> IntakeResult:
    """Keeps a payload in quarantine in its own transaction; a lost race with a retried delivery runs it again."""
    key = _bounded("webhook:", delivery.webhook_id) if delivery.webhook_id is not None else None
    return await write_retrying(
        sessions, lambda session: store_quarantined(session, delivery=delivery, error=error, delivery_key=key)
    )


async def list_quarantined(
    session: AsyncSession, *, source: str | None, after: int | None, limit: int
) -> list[QuarantinedPayload]:
    """Up to ``limit + 1`` quarantined payloads after the cursor, oldest first, of one source or all."""
    statement = select(QuarantinedPayload).order_by(QuarantinedPayload.id).limit(limit + 1)
    if source is not None:
        statement = statement.where(QuarantinedPayload.source == source)
    if after is not None:
        statement = statement.where(QuarantinedPayload.id > after)
    return list(await session.scalars(statement))


async def find_quarantined(session: AsyncSession, payload_id: int, *, lock: bool = False) -> QuarantinedPayload:
    """The quarantined payload with this id.

    Raises:
        NotFound: None has this id.
    """
    statement = select(QuarantinedPayload).where(QuarantinedPayload.id == payload_id)
    payload = await session.scalar(statement.with_for_update() if lock else statement)
    if payload is None:
        raise NotFound(f"no quarantined payload has the id {payload_id}")
    return payload


def quarantined_summary(payload: QuarantinedPayload) -> QuarantinedSummary:
    """A quarantined payload as listed."""
    return QuarantinedSummary.model_validate(payload, from_attributes=True)


def quarantined_out(payload: QuarantinedPayload) -> QuarantinedPayloadOut:
    """A quarantined payload whole."""
    return QuarantinedPayloadOut.model_validate(payload, from_attributes=True)


@dataclass(frozen=True)
class Replayed:
    """A quarantined payload stored as leads: its source, and the answer a delivery of it now gets."""

    source: str
    answer: Answer


async def replay_quarantined(session: AsyncSession, *, payload_id: int, now: datetime) -> Replayed:
    """Maps a quarantined payload again by its source's current settings and stores its leads, exactly once.

    The payload's row is locked and marked replayed in the transaction that stores the leads, so of two replays
    one stores and the other is refused. A retried delivery of it afterwards gets the replay's answer.

    Raises:
        NotFound: No quarantined payload has this id.
        Conflict: It was replayed already, or its source is gone.
        NotALead: It still cannot become a lead; it stays in quarantine.
    """
    payload = await find_quarantined(session, payload_id, lock=True)
    if payload.replayed_at is not None:
        raise Conflict(
            f"quarantined payload {payload_id} was replayed already, into lead(s) {', '.join(payload.lead_ids or [])}"
        )
    source = await session.get(Source, payload.source)
    if source is None:
        raise Conflict(f"the source {payload.source!r} of quarantined payload {payload_id} no longer exists")
    webhook_id = payload.delivery_key.removeprefix("webhook:") if payload.delivery_key else None
    parsed = parse_body(_raw_body(payload), payload.content_type)
    mapped = map_leads(LeadMapping.of(source), parsed, webhook_id=webhook_id)
    key = None
    if mapped.delivery_key is not None:
        key = delivery_intake_key(payload.source, mapped.delivery_key)
        # The 422 a retried delivery was given gives way to the replay's answer.
        await session.execute(
            delete(IdempotentAnswer).where(IdempotentAnswer.caller == key.caller, IdempotentAnswer.key == key.key)
        )
    [result] = await store_intakes(
        session, [Intake(leads=mapped.leads, received_at=now, batch=len(mapped.leads) > 1, key=key)]
    )
    if not isinstance(result, Answer):
        raise result
    payload.replayed_at = now
    payload.lead_ids = answered_lead_ids(result)
    return Replayed(source=payload.source, answer=result)


def answered_lead_ids(answer: Answer) -> list[str]:
    """The leads an intake answer names, in order."""
    body = json.loads(answer.body)
    if "items" in body:
        return [item["lead_id"] for item in body["items"] if item.get("lead_id")]
    return [body["lead_id"]] if body.get("lead_id") else []


def problem_media_type(answer: Answer) -> str:
    """The media type of an answer held for a delivery: problem+json for an error."""
    return PROBLEM_JSON if answer.status >= 400 else "application/json"


# Erasure ---------------------------------------------------------------------------------------------------------


class LeadErasedAnswer(BaseModel):
    """What erasure answers: the lead, now forgotten by lead-ingest and being forgotten by every service."""

    lead_id: str
    status: str = "erased"


async def erase_lead(session: AsyncSession, *, lead_id: str, now: datetime) -> LeadErasedAnswer:
    """Forgets a lead's person in lead-ingest and publishes ``lead.erased`` for the other services; repeatable.

    Deleted are the lead, the answers that name it, and the quarantined payloads about the person (by e-mail,
    by the lead they were replayed into, or holding the address in their raw body). Kept: its id, as erased.

    Raises:
        NotFound: No lead has this id, nor ever had.
    """
    lead = await session.scalar(select(Lead).where(Lead.id == lead_id).with_for_update())
    if lead is None:
        if await session.get(ErasedLead, lead_id) is not None:
            return LeadErasedAnswer(lead_id=lead_id)
        raise NotFound(f"no lead has the id {lead_id!r}")
    email = lead.email_normalized
    await session.delete(lead)
    await session.execute(delete(IdempotentAnswer).where(IdempotentAnswer.body.contains(lead_id, autoescape=True)))
    raw_email = lead.email.lower()
    await session.execute(
        delete(QuarantinedPayload).where(
            or_(
                QuarantinedPayload.email_normalized == email,
                cast(QuarantinedPayload.lead_ids, Text).contains(f'"{lead_id}"', autoescape=True),
                func.lower(QuarantinedPayload.body).contains(raw_email, autoescape=True),
                func.lower(QuarantinedPayload.body).contains(raw_email.replace("@", "%40"), autoescape=True),
            )
        )
    )
    session.add(ErasedLead(lead_id=lead_id, erased_at=now))
    await add_events(session, [LeadErased(lead_id=lead_id)])
    return LeadErasedAnswer(lead_id=lead_id)
