"""handoff's request and response bodies."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from baton.events import AssignmentStatus, RoutingAttributes, Timestamp

RepStatus = Literal["available", "away", "ooo"]
Segment = Literal["smb", "mid", "ent"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
AssignmentState = Literal["queued", "assigned", "reassigned"] | AssignmentStatus

MAX_TERRITORIES = 250  # about as many as ISO 3166 has codes
MAX_SHIFTS_PER_DAY = 8

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@(?:[^@\s<>()\[\],;:\"./\\]+\.)+[^@\s<>()\[\],;:\"./\\\d]{2,}$")


@cache
def _iana_zones() -> frozenset[str]:
    # The host's "localtime" file is whatever the machine is set to, not a zone a rep works in.
    return frozenset(zoneinfo.available_timezones() - {"localtime"})


def _iana_zone(name: str) -> str:
    if name not in _iana_zones():
        raise ValueError("not an IANA time zone such as Europe/Berlin or America/New_York")
    return name


def _looks_like_an_email(address: str) -> str:
    if not _EMAIL.match(address):
        raise ValueError("not an e-mail address")
    return address


def _starts_before_it_ends(shift: tuple[str, str]) -> tuple[str, str]:
    if shift[0] >= shift[1]:
        raise ValueError(f"a shift must start before it ends: {shift[0]} is not before {shift[1]}")
    return shift


RepId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$")]
RepName = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=320), AfterValidator(_looks_like_an_email)]
Team = Annotated[str, Field(min_length=1, max_length=100)]
Country = Annotated[str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code, e.g. US")]
Territories = Annotated[list[Country], Field(max_length=MAX_TERRITORIES)]
Segments = Annotated[list[Segment], Field(max_length=3)]
Weight = Annotated[int, Field(ge=1, le=1000)]
Capacity = Annotated[int, Field(ge=0, le=100_000)]
TimeZoneName = Annotated[str, Field(max_length=64), AfterValidator(_iana_zone)]
ClockTime = Annotated[str, Field(pattern=r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", examples=["09:00"])]
Shift = Annotated[tuple[ClockTime, ClockTime], AfterValidator(_starts_before_it_ends)]
WorkingHours = Annotated[
    dict[Weekday, Annotated[list[Shift], Field(max_length=MAX_SHIFTS_PER_DAY)]],
    Field(examples=[{"mon": [["09:00", "12:30"], ["13:30", "17:30"]]}]),
]


class RepIn(BaseModel):
    """A rep to create; ``working_hours`` are in the rep's ``timezone``, and absent means always."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rep_id: RepId
    name: RepName
    email: Email | None = None
    team: Team | None = None
    territories: Territories = Field(default_factory=list)
    segments: Segments = Field(default_factory=list)
    weight: Weight = 1
    capacity: Capacity = 50
    timezone: TimeZoneName = "UTC"
    working_hours: WorkingHours | None = None
    status: RepStatus = "available"
    ooo_until: Timestamp | None = None


NOT_NULLABLE = ("name", "territories", "segments", "weight", "capacity", "timezone", "status")
"""What every rep has: a PATCH may change these but not clear them (the others it clears with null)."""


class RepPatch(BaseModel):
    """Changes to a rep; absent fields stay as they are, null clears the ones a rep may lack."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: RepName | None = None
    email: Email | None = None
    team: Team | None = None
    territories: Territories | None = None
    segments: Segments | None = None
    weight: Weight | None = None
    capacity: Capacity | None = None
    timezone: TimeZoneName | None = None
    working_hours: WorkingHours | None = None
    status: RepStatus | None = None
    ooo_until: Timestamp | None = None

    @field_validator(*NOT_NULLABLE, mode="before")
    @classmethod
    def _cannot_be_cleared(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            raise ValueError(f"every rep has a {info.field_name}; it can be changed but not cleared")
        return value


class RepOut(RepIn):
    """A rep as stored."""

    model_config = ConfigDict(from_attributes=True)

    created_at: datetime
    updated_at: datetime


class AssignmentOut(BaseModel):
    """A lead handed to a rep."""

    assignment_id: str
    lead_id: str
    rep_id: str | None
    team: str | None
    rule: str
    attempt: int
    status: AssignmentState
    reason: str | None
    amount: Decimal | None
    lead: RoutingAttributes
    accept_due_at: datetime | None
    touch_due_at: datetime | None
    created_at: datetime
    updated_at: datetime


class AssignmentEventIn(BaseModel):
    """What a sales tool reports about an assignment; ``occurred_at`` defaults to now."""

    model_config = ConfigDict(extra="forbid")

    type: AssignmentStatus
    reason: str | None = Field(None, max_length=500)
    amount: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2)
    occurred_at: Timestamp | None = None


class DecisionOut(BaseModel):
    """Why an assignment went to its rep."""

    assignment_id: str
    rule: str
    method: str
    candidates: list[str]
    skipped: list[dict[str, str]]
    chosen: str | None
