"""The CloudEvents envelope, its Kafka binary-mode encoding, and the AsyncAPI document generated from the models."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from baton import asyncapi
from baton.consumer import Incoming, handlers
from baton.events import (
    EVENT_MODELS,
    LEADS_HANDOFF,
    LEADS_INGESTED,
    TOPICS,
    CloudEvent,
    LeadActivity,
    LeadReceived,
    LeadStatusChanged,
    UnknownEventType,
    from_binary,
    stored_to_binary,
    to_binary,
)

CHECKED_IN_ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
NewLead = Callable[..., LeadReceived]
CE_HEADERS = ("ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time", "ce_subject")


def test_wrap_takes_subject_from_lead_id_and_type_and_topic_from_the_model(
    new_lead: NewLead,
) -> None:
    lead = new_lead()

    event = CloudEvent.wrap(lead, source="/baton/lead-ingest")

    assert event.subject == lead.lead_id
    assert event.type == "baton.lead.received.v1"
    assert event.topic == LEADS_INGESTED
    assert event.source == "/baton/lead-ingest"
    assert event.specversion == "1.0"
    assert event.data == lead.model_dump(mode="json")


def test_wrap_keeps_the_time_it_is_given(new_lead: NewLead) -> None:
    happened = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)

    event = CloudEvent.wrap(new_lead(), source="/test", time=happened)

    assert event.time == happened


def test_binary_round_trip_preserves_every_attribute_and_the_data(new_lead: NewLead) -> None:
    event = CloudEvent.wrap(new_lead(), source="/baton/lead-ingest")

    key, headers, value = to_binary(event)
    decoded = from_binary(headers, value)

    assert key == event.subject
    assert (decoded.id, decoded.source, decoded.type, decoded.time, decoded.subject) == (
        event.id,
        event.source,
        event.type,
        event.time,
        event.subject,
    )
    assert decoded.data == event.data
    assert decoded == event


def test_binary_mode_puts_attributes_in_ce_headers_and_data_in_a_json_body(
    new_lead: NewLead,
) -> None:
    event = CloudEvent.wrap(new_lead(), source="/baton/lead-ingest")

    _, headers, value = to_binary(event)

    found = dict(headers)
    assert set(found) == {*CE_HEADERS, "content-type"}
    assert found["ce_id"] == event.id.encode()
    assert found["ce_type"] == b"baton.lead.received.v1"
    assert found["ce_subject"] == event.subject.encode()
    assert found["ce_specversion"] == b"1.0"
    assert found["content-type"] == b"application/json"
    assert json.loads(value) == event.data


@pytest.mark.parametrize("missing", CE_HEADERS)
def test_from_binary_rejects_a_message_without_a_ce_header(new_lead: NewLead, missing: str) -> None:
    _, headers, value = to_binary(CloudEvent.wrap(new_lead(), source="/test"))
    incomplete = [(name, raw) for name, raw in headers if name != missing]

    with pytest.raises(ValueError, match=missing):
        from_binary(incomplete, value)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"a string"', b"42", b"null"])
def test_from_binary_rejects_a_body_that_is_not_a_json_object(new_lead: NewLead, body: bytes) -> None:
    _, headers, _ = to_binary(CloudEvent.wrap(new_lead(), source="/test"))

    with pytest.raises(ValueError, match="JSON object"):
        from_binary(headers, body)


def test_from_binary_rejects_a_body_that_is_not_json(new_lead: NewLead) -> None:
    _, headers, _ = to_binary(CloudEvent.wrap(new_lead(), source="/test"))

    with pytest.raises(ValueError):
        from_binary(headers, b"not json")


def test_payload_returns_the_typed_model_that_was_wrapped(new_lead: NewLead) -> None:
    lead = new_lead()
    _, headers, value = to_binary(CloudEvent.wrap(lead, source="/test"))

    payload = from_binary(headers, value).payload()

    assert isinstance(payload, LeadReceived)
    assert payload == lead


def test_payload_restores_decimals_and_datetimes_after_the_wire() -> None:
    changed = LeadStatusChanged(
        lead_id="lead-1",
        assignment_id="assignment-1",
        rep_id="rep-1",
        status="won",
        amount=Decimal("12500.50"),
        occurred_at=datetime(2024, 6, 1, 9, 15, tzinfo=UTC),
    )
    event = CloudEvent.wrap(changed, source="/baton/handoff")
    _, headers, value = to_binary(event)

    payload = from_binary(headers, value).payload()

    assert event.topic == LEADS_HANDOFF
    assert payload == changed


def test_payload_validates_the_data_against_the_model(new_lead: NewLead) -> None:
    event = CloudEvent.wrap(new_lead(), source="/test")
    without_email = {name: value for name, value in event.data.items() if name != "email"}
    broken = event.model_copy(update={"data": without_email})

    with pytest.raises(ValidationError, match="email"):
        broken.payload()


def test_unknown_event_type_raises_unknown_event_type() -> None:
    event = CloudEvent(source="/test", type="baton.lead.teleported.v1", subject="lead-1", data={"lead_id": "lead-1"})

    with pytest.raises(UnknownEventType, match="baton.lead.teleported.v1"):
        event.payload()
    with pytest.raises(UnknownEventType):
        _ = event.topic


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_every_event_model_travels_on_a_known_topic_under_its_own_type(event_type: str) -> None:
    model = EVENT_MODELS[event_type]

    assert model.topic in TOPICS
    assert model.event_type == event_type


def test_checked_in_asyncapi_document_matches_the_event_models() -> None:
    checked_in = CHECKED_IN_ASYNCAPI.read_text()

    assert asyncapi.render() == checked_in, (
        "docs/asyncapi.json is out of date with the event models in baton.events: run `make asyncapi` and commit it"
    )


@pytest.mark.parametrize(
    "value",
    ["2026-11-26T09:00:00", "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59+00:00", "9999-12-31T23:59:59-05:00"],
)
def test_event_times_without_an_offset_or_out_of_range_are_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        LeadActivity(lead_id="l", activity_type="demo_request", occurred_at=value)


def test_event_times_are_normalised_to_utc() -> None:
    activity = LeadActivity(lead_id="l", activity_type="demo_request", occurred_at="2026-11-26T23:30:00-05:00")
    assert activity.occurred_at == datetime(2026, 11, 27, 4, 30, tzinfo=UTC)
    assert activity.occurred_at.utcoffset() == timedelta(0)


async def _on_received(event: Incoming[LeadReceived], session: AsyncSession) -> None:
    """A handler for the table tests."""


async def _on_activity(event: Incoming[LeadActivity], session: AsyncSession) -> None:
    """A handler for the table tests."""


async def _untyped(event: object, session: AsyncSession) -> None:
    """A handler whose signature names no event."""


def test_handler_table_takes_each_event_type_from_the_handlers_signature() -> None:
    table = handlers(_on_received, _on_activity)
    assert table == {LeadReceived.event_type: _on_received, LeadActivity.event_type: _on_activity}


def test_handler_table_refuses_a_handler_that_names_no_event_or_a_second_handler_for_one() -> None:
    with pytest.raises(TypeError, match="Incoming"):
        handlers(_untyped)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="two handlers"):
        handlers(_on_received, _on_received)


def test_an_envelope_as_the_outbox_stores_it_encodes_byte_for_byte_as_the_validated_envelope(
    new_lead: NewLead,
) -> None:
    envelope = CloudEvent.wrap(new_lead(first_name="Zoë", utm={"utm_source": 'naïve "quotes"'}), source="/baton/t")

    assert stored_to_binary(envelope.model_dump_json()) == to_binary(envelope)
