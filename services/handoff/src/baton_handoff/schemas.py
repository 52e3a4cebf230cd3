"""handoff's request and response bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from baton.events import AssignmentStatus, RoutingAttributes

RepStatus = Literal["available", "away", "ooo"]


class RepIn(BaseModel):
    """A rep to create."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rep_id: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@-]+$")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(None, max_length=320)
    team: str | None = Field(None, max_length=100)
    territories: list[str] = Field(default_factory=list)
    segments: list[Literal["smb", "mid", "ent"]] = Field(default_factory=list)
    weight: int = Field(1, ge=1, le=1000)
    capacity: int = Field(50, ge=0, le=100_000)
    timezone: str = "UTC"
    working_hours: dict[str, Any] | None = None
    status: RepStatus = "available"
    ooo_until: datetime | None = None


class RepPatch(BaseModel):
    """Changes to a rep; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, max_length=320)
    team: str | None = Field(None, max_length=100)
    territories: list[str] | None = None
    segments: list[Literal["smb", "mid", "ent"]] | None = None
    weight: int | None = Field(None, ge=1, le=1000)
    capacity: int | None = Field(None, ge=0, le=100_000)
    timezone: str | None = None
    working_hours: dict[str, Any] | None = None
    status: RepStatus | None = None
    ooo_until: datetime | None = None


class RepOut(RepIn):
    """A rep as stored."""

    model_config = ConfigDict(from_attributes=True)

    created_at: datetime
    updated_at: datetime


class AssignmentOut(BaseModel):
    """A lead handed to a rep."""

    assignment_id: str
    lead_id: str
    rep_id: str
    team: str | None
    rule: str
    attempt: int
    status: Literal["assigned"] | AssignmentStatus
    reason: str | None
    amount: Decimal | None
    lead: RoutingAttributes
    accept_due_at: datetime
    touch_due_at: datetime
    created_at: datetime
    updated_at: datetime


class AssignmentEventIn(BaseModel):
    """What a sales tool reports about an assignment."""

    model_config = ConfigDict(extra="forbid")

    type: AssignmentStatus
    reason: str | None = Field(None, max_length=500)
    amount: Decimal | None = Field(None, ge=0, max_digits=14, decimal_places=2)
    occurred_at: datetime | None = None


class DecisionOut(BaseModel):
    """Why an assignment went to its rep."""

    assignment_id: str
    rule: str
    method: str
    candidates: list[str]
    skipped: list[dict[str, str]]
    chosen: str | None
