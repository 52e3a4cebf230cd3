"""The CloudEvents envelope and one pydantic model for every Baton event: the single source of truth."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"

LEADS_INGESTED = "leads.ingested"
LEADS_SCORED = "leads.scored"
LEADS_HANDOFF = "leads.handoff"
TOPICS = (LEADS_INGESTED, LEADS_SCORED, LEADS_HANDOFF)
DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """Returns the dead-letter topic for a topic.

    Args:
        topic: A Baton topic such as ``leads.scored``.

    Returns:
        The topic name with ``.dlq`` appended.
    """
    return topic + DLQ_SUFFIX


def utcnow() -> datetime:
    """Returns the current time, timezone-aware UTC.

    Returns:
        ``datetime.now(UTC)``.
    """
    return datetime.now(UTC)


Clock = Callable[[], datetime]
"""Something that tells the time: ``utcnow`` in production, a fixed or stepping clock in tests."""

EARLIEST_YEAR = 1900
LATEST_YEAR = 2999


def _within_supported_years(value: datetime) -> datetime:
    # Year 1 or 9999 cannot be shifted to UTC or have a deadline added without overflowing.
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ValueError(f"must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return value.astimezone(UTC)


Timestamp = Annotated[AwareDatetime, AfterValidator(_within_supported_years)]
"""A point in time that carries its offset (naive times are refused), normalised to UTC."""


def new_id() -> str:
    """Returns a new random identifier for leads, events and assignments.

    Returns:
        A UUID4 string.
    """
    return str(uuid.uuid4())


class EventData(BaseModel):
    """Base for event payloads; subclasses name their CloudEvents type and topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    topic: ClassVar[str]

    lead_id: str


class Activity(BaseModel):
    """One engagement of a lead: a form fill, an email click, a demo request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=64)
    occurred_at: Timestamp | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class LeadReceived(EventData):
    """A new lead entered Baton."""

    event_type: ClassVar[str] = "baton.lead.received.v1"
    topic: ClassVar[str] = LEADS_INGESTED

    source: str | None = None
    campaign: str | None = None
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    country: str | None = None
    company_size: int | None = None
    industry: str | None = None
    phone: str | None = None
    utm: dict[str, str] = Field(default_factory=dict)
    activities: list[Activity] = Field(default_factory=list)
    external_id: str | None = None
    received_at: Timestamp


class LeadUpdated(EventData):
    """A duplicate of a known person was merged into the existing lead."""

    event_type: ClassVar[str] = "baton.lead.updated.v1"
    topic: ClassVar[str] = LEADS_INGESTED

    changed: dict[str, Any]
    activities: list[Activity] = Field(default_factory=list)
    updated_at: Timestamp


class LeadActivity(EventData):
    """A known lead engaged again."""

    event_type: ClassVar[str] = "baton.lead.activity.v1"
    topic: ClassVar[str] = LEADS_INGESTED

    activity_type: str
    occurred_at: Timestamp
    properties: dict[str, Any] = Field(default_factory=dict)


class LeadErased(EventData):
    """A person asked to be forgotten: every service removes their personal data."""

    event_type: ClassVar[str] = "baton.lead.erased.v1"
    topic: ClassVar[str] = LEADS_INGESTED


class ScoreLine(BaseModel):
    """One rule's contribution to a score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    points: int


FitGrade = Literal["A", "B", "C", "D"]


class LeadScored(EventData):
    """A lead was scored under a model version."""

    event_type: ClassVar[str] = "baton.lead.scored.v1"
    topic: ClassVar[str] = LEADS_SCORED

    score: int
    fit_grade: FitGrade
    engagement: int
    breakdown: list[ScoreLine]
    model_version: int


class RoutingAttributes(BaseModel):
    """What handoff needs to route a lead and show it to the rep."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    title: str | None = None
    phone: str | None = None
    country: str | None = None
    company_size: int | None = None
    industry: str | None = None
    source: str | None = None
    campaign: str | None = None


class LeadQualified(EventData):
    """A lead became a marketing-qualified lead (MQL)."""

    event_type: ClassVar[str] = "baton.lead.qualified.v1"
    topic: ClassVar[str] = LEADS_SCORED

    score: int
    fit_grade: FitGrade
    reason: Literal["threshold", "hand-raiser"]
    lead: RoutingAttributes


class LeadAssigned(EventData):
    """An MQL was assigned to a rep, with its SLA deadlines."""

    event_type: ClassVar[str] = "baton.lead.assigned.v1"
    topic: ClassVar[str] = LEADS_HANDOFF

    assignment_id: str
    rep_id: str
    team: str | None = None
    source: str | None = None
    campaign: str | None = None
    rule: str
    attempt: int
    accept_due_at: Timestamp
    touch_due_at: Timestamp


AssignmentStatus = Literal["accepted", "rejected", "contacted", "qualified", "won", "lost"]


class LeadStatusChanged(EventData):
    """A sales tool reported progress on an assignment."""

    event_type: ClassVar[str] = "baton.lead.status_changed.v1"
    topic: ClassVar[str] = LEADS_HANDOFF

    assignment_id: str
    rep_id: str
    team: str | None = None
    source: str | None = None
    campaign: str | None = None
    status: AssignmentStatus
    reason: str | None = None
    amount: Decimal | None = None
    occurred_at: Timestamp


class SlaBreached(EventData):
    """An accept or touch deadline passed."""

    event_type: ClassVar[str] = "baton.sla.breached.v1"
    topic: ClassVar[str] = LEADS_HANDOFF

    assignment_id: str
    rep_id: str
    sla: Literal["accept", "touch"]
    due_at: Timestamp
    breached_at: Timestamp
    action: Literal["reassigned", "escalated"]


class LeadRecycled(EventData):
    """A lead went back to marketing nurture."""

    event_type: ClassVar[str] = "baton.lead.recycled.v1"
    topic: ClassVar[str] = LEADS_HANDOFF

    reason: str


EVENT_MODELS: dict[str, type[EventData]] = {
    model.event_type: model
    for model in (
        LeadReceived,
        LeadUpdated,
        LeadActivity,
        LeadErased,
        LeadScored,
        LeadQualified,
        LeadAssigned,
        LeadStatusChanged,
        SlaBreached,
        LeadRecycled,
    )
}


EventModel = type[EventData]


class UnknownEventType(ValueError):
    """An envelope named a type Baton does not know."""


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 envelope; ``subject`` is the lead id and keys the message."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_id)
    source: str
    type: str
    specversion: str = SPEC_VERSION
    time: Timestamp = Field(default_factory=utcnow)
    subject: str
    datacontenttype: str = CONTENT_TYPE
    data: dict[str, Any]

    @classmethod
    def wrap(cls, data: EventData, *, source: str, time: datetime | None = None) -> CloudEvent:
        """Builds the envelope for a payload.

        Args:
            data: The typed event payload.
            source: The producing service, e.g. ``/baton/scoring``.
            time: When it happened; now if omitted.

        Returns:
            The envelope, ready for the outbox.
        """
        return cls(
            source=source,
            type=data.event_type,
            subject=data.lead_id,
            time=time or utcnow(),
            data=data.model_dump(mode="json"),
        )

    @property
    def topic(self) -> str:
        """The topic this event travels on."""
        return self.model().topic

    def model(self) -> EventModel:
        """Returns the payload model for this envelope's type.

        Returns:
            The ``EventData`` subclass.

        Raises:
            UnknownEventType: The type is not a Baton event.
        """
        try:
            return EVENT_MODELS[self.type]
        except KeyError:
            raise UnknownEventType(f"unknown event type {self.type!r}") from None

    def payload(self) -> EventData:
        """Returns the typed, validated payload.

        Returns:
            An instance of the model for this envelope's type.
        """
        return self.model().model_validate(self.data)


_HEADER_ATTRIBUTES = ("id", "source", "type", "specversion", "time", "subject")


def to_binary(event: CloudEvent) -> tuple[str, list[tuple[str, bytes]], bytes]:
    """Encodes an event in CloudEvents Kafka binary mode.

    Args:
        event: The envelope.

    Returns:
        ``(key, headers, value)``: key is the lead id, headers are ``ce_*`` plus ``content-type``,
        value is the JSON data.
    """
    return _binary_from_dumped(event.model_dump(mode="json"))


def stored_to_binary(envelope_json: str) -> tuple[str, list[tuple[str, bytes]], bytes]:
    """Encodes an envelope that ``CloudEvent.model_dump_json`` wrote (as the outbox stores it) in binary mode.

    The same result as ``to_binary`` on the validated envelope, without validating it again.

    Args:
        envelope_json: The envelope as JSON.

    Returns:
        ``(key, headers, value)`` as ``to_binary`` gives them.
    """
    return _binary_from_dumped(json.loads(envelope_json))


def _binary_from_dumped(dumped: dict[str, Any]) -> tuple[str, list[tuple[str, bytes]], bytes]:
    headers = [(f"ce_{name}", str(dumped[name]).encode()) for name in _HEADER_ATTRIBUTES]
    headers.append(("content-type", str(dumped["datacontenttype"]).encode()))
    value = json.dumps(dumped["data"], separators=(",", ":"), ensure_ascii=False).encode()
    return str(dumped["subject"]), headers, value


def from_binary(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...], value: bytes) -> CloudEvent:
    """Decodes a CloudEvents binary-mode message.

    Args:
        headers: The message headers.
        value: The JSON body.

    Returns:
        The envelope.

    Raises:
        ValueError: A required header is missing or the body is not a JSON object.
    """
    found = {name: raw.decode() for name, raw in headers}
    attributes: dict[str, Any] = {}
    for name in _HEADER_ATTRIBUTES:
        if f"ce_{name}" not in found:
            raise ValueError(f"missing CloudEvents header ce_{name}")
        attributes[name] = found[f"ce_{name}"]
    attributes["datacontenttype"] = found.get("content-type", CONTENT_TYPE)
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("event body must be a JSON object")
    return CloudEvent(**attributes, data=data)
