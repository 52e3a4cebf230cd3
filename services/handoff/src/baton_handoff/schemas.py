"""handoff's request and response bodies."""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, Literal

import pycountry
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from baton.events import AssignmentStatus, RoutingAttributes, Timestamp
from baton_handoff import routing

RepStatus = Literal["available", "away", "ooo"]
Segment = Literal["smb", "mid", "ent"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
AssignmentState = Literal["queued", "assigned", "reassigned"] | AssignmentStatus

MAX_TERRITORIES = 250  # about as many as ISO 3166 has codes
MAX_SHIFTS_PER_DAY = 8
MAX_CONDITIONS = 20
MAX_CONDITION_VALUES = 100
MAX_CONDITION_TEXT = 200
MAX_ATTEMPTS = 10
MAX_SLA = timedelta(days=90)

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


def _iso_3166_country(code: str) -> str:
    if pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{code} is not an ISO 3166-1 alpha-2 country code")
    return code


def _starts_before_it_ends(shift: tuple[str, str]) -> tuple[str, str]:
    if shift[0] >= shift[1]:
        raise ValueError(f"a shift must start before it ends: {shift[0]} is not before {shift[1]}")
    return shift


Domain = Annotated[
    str,
    BeforeValidator(lambda value: value.strip().lower() if isinstance(value, str) else value),
    Field(
        max_length=253,
        pattern=r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        description="An e-mail domain such as example.com (lower-cased)",
    ),
]
AccountName = Annotated[str, Field(min_length=1, max_length=200)]
RepId = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$")]
RepName = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=320), AfterValidator(_looks_like_an_email)]
Team = Annotated[str, Field(min_length=1, max_length=100)]
Country = Annotated[
    str, Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2 code, e.g. US"), AfterValidator(_iso_3166_country)
]
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


class AccountIn(BaseModel):
    """An account: leads whose e-mail domain is ``domain`` go to ``owner_rep_id`` when that rep can take them."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    domain: Domain
    name: AccountName
    owner_rep_id: RepId


class AccountPatch(BaseModel):
    """Changes to an account; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: AccountName | None = None
    owner_rep_id: RepId | None = None

    @field_validator("name", "owner_rep_id", mode="before")
    @classmethod
    def _cannot_be_cleared(cls, value: object, info: ValidationInfo) -> object:
        if value is None:
            raise ValueError(f"every account has a {info.field_name}; it can be changed but not cleared")
        return value


class AccountOut(AccountIn):
    """An account as stored."""

    model_config = ConfigDict(from_attributes=True)

    created_at: datetime
    updated_at: datetime


def _value_fits_the_op(value: Any, info: ValidationInfo) -> Any:
    op = info.data.get("op")
    if op is None:  # the op itself failed validation and is reported on its own
        return value
    scalar = (str, int, float)
    if op == "exists":
        if not isinstance(value, bool):
            raise ValueError("exists takes true or false")
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > MAX_CONDITION_VALUES:
            raise ValueError(f"{op} takes a list of 1 to {MAX_CONDITION_VALUES} values")
        for item in value:
            _check_scalar(item, scalar)
    elif op in ("gte", "lte"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{op} takes a number")
    elif op == "contains":
        if not isinstance(value, str) or not value:
            raise ValueError("contains takes a non-empty string")
        _check_scalar(value, scalar)
    else:
        _check_scalar(value, scalar)
    return value


def _check_scalar(value: Any, kinds: tuple[type, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError("takes a string or a number")
    if isinstance(value, str) and len(value) > MAX_CONDITION_TEXT:
        raise ValueError(f"a value is at most {MAX_CONDITION_TEXT} characters")


def _a_lead_attribute(name: str) -> str:
    if name not in routing.FIELDS:
        raise ValueError(f"not a lead attribute routing knows; one of {', '.join(routing.FIELDS)}")
    return name


def _positive(duration: timedelta) -> timedelta:
    if duration <= timedelta(0):
        raise ValueError("must be longer than zero")
    if duration > MAX_SLA:
        raise ValueError(f"must be at most {MAX_SLA.days} days")
    return duration


def _not_reserved(name: str) -> str:
    if name == routing.DEFAULT_RULE:
        raise ValueError(f"{routing.DEFAULT_RULE!r} is the rule used when no other matches; choose another name")
    return name


Op = Literal["eq", "neq", "in", "not_in", "gte", "lte", "contains", "exists"]
Method = Literal["round_robin", "weighted", "least_loaded", "account_owner"]
SlaClock = Literal["business_hours", "wall_clock"]
SlaDuration = Annotated[timedelta, AfterValidator(_positive), Field(examples=["PT15M"])]
RuleName = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$"), AfterValidator(_not_reserved)
]
LeadAttribute = Annotated[
    str, Field(json_schema_extra={"enum": list(routing.FIELDS)}), AfterValidator(_a_lead_attribute)
]


class Condition(BaseModel):
    """One test on a lead attribute; ``in``/``not_in`` take a list, ``gte``/``lte`` a number, ``exists`` a bool."""

    model_config = ConfigDict(extra="forbid")

    field: LeadAttribute
    op: Op
    value: Any = None

    _value_fits = field_validator("value")(_value_fits_the_op)


class SlaPolicyIn(BaseModel):
    """How long a rep has to accept and to first touch a lead, counted in working time or on the wall clock."""

    model_config = ConfigDict(extra="forbid")

    accept_within: SlaDuration
    touch_within: SlaDuration
    clock: SlaClock = "business_hours"


class RoutingRuleBody(BaseModel):
    """A routing rule without its name: tried in ascending ``priority``; the first whose conditions all hold wins."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    priority: Annotated[int, Field(ge=0, le=1_000_000)]
    conditions: Annotated[list[Condition], Field(max_length=MAX_CONDITIONS)] = Field(default_factory=list)
    team: Team | None = None
    method: Method = "round_robin"
    sla: SlaPolicyIn
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] = 3
    fallback_team: Team | None = None


class RoutingRuleIn(RoutingRuleBody):
    """A routing rule to create."""

    name: RuleName


class RoutingRuleOut(RoutingRuleIn):
    """A routing rule as stored."""

    model_config = ConfigDict(from_attributes=True)

    created_at: datetime
    updated_at: datetime


class LeadOut(RoutingAttributes):
    """The lead as routed: what scoring passed on, with its score and fit grade."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    score: int | None = None
    fit_grade: str | None = None


class AssignmentOut(BaseModel):
    """A lead handed to a rep, or waiting in a team's fallback queue (``queued``, no rep yet)."""

    assignment_id: str
    lead_id: str
    rep_id: str | None
    team: str | None
    rule: str
    attempt: int
    max_attempts: int
    status: AssignmentState
    reason: str | None
    amount: Decimal | None
    lead: LeadOut
    sla_clock: SlaClock
    accept_due_at: datetime | None
    touch_due_at: datetime | None
    accept_at_risk_at: datetime | None
    touch_at_risk_at: datetime | None
    at_risk: bool = Field(description="A running SLA clock is past 80% of its time.")
    fallback_team: str | None
    escalated: bool
    created_at: datetime
    updated_at: datetime


class AssignmentEventIn(BaseModel):
    """What a sales tool reports about an assignment; ``occurred_at`` defaults to now.

    ``assigned`` hands a queued lead to ``rep_id`` (admins and the lead of the queue's team only).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["assigned"] | AssignmentStatus
    rep_id: RepId | None = Field(None, validate_default=True)
    reason: str | None = Field(None, max_length=500)
    amount: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2)
    occurred_at: Timestamp | None = None

    @field_validator("rep_id")
    @classmethod
    def _only_to_hand_out(cls, rep_id: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if kind == "assigned" and rep_id is None:
            raise ValueError("handing out a queued lead names the rep it goes to")
        if kind is not None and kind != "assigned" and rep_id is not None:
            raise ValueError("only an assigned event names a rep")
        return rep_id


class CandidateOut(BaseModel):
    """A rep routing considered; ``rep_id`` is hidden from callers outside the rep's team."""

    rep_id: str | None
    team: str | None = None
    outcome: str
    reason: str


class DecisionOut(BaseModel):
    """Why an assignment went where it went: the rules tried, every candidate and why, who was chosen, when."""

    assignment_id: str
    rule: str
    method: str
    team: str | None = None
    matched: list[dict[str, Any]] = Field(default_factory=list)
    candidates: list[CandidateOut] = Field(default_factory=list)
    chosen: str | None = None
    note: str | None = None
    sla: SlaPolicyIn | None = None
    max_attempts: int | None = None
    fallback_team: str | None = None
    decided_at: datetime | None = None
