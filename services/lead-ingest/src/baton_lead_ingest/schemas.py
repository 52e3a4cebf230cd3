"""lead-ingest's request and response bodies."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from baton.events import Activity

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\"]+$")


class LeadIn(BaseModel):
    """The canonical lead; only ``email`` is required."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(max_length=320, examples=["jane.doe@example.com"])
    first_name: str | None = Field(None, max_length=200)
    last_name: str | None = Field(None, max_length=200)
    company: str | None = Field(None, max_length=300)
    title: str | None = Field(None, max_length=300)
    phone: str | None = Field(None, max_length=64)
    country: str | None = Field(None, max_length=64)
    company_size: int | None = Field(None, ge=0, le=10_000_000)
    industry: str | None = Field(None, max_length=200)
    source: str | None = Field(None, max_length=200)
    campaign: str | None = Field(None, max_length=200)
    utm: dict[str, str] = Field(default_factory=dict, max_length=20)
    activities: list[Activity] = Field(default_factory=list, max_length=100)
    external_id: str | None = Field(None, max_length=200)

    @field_validator("email")
    @classmethod
    def _looks_like_an_email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError("not an e-mail address")
        return value


class LeadAccepted(BaseModel):
    """What intake answers: the lead's id and whether it merged into a known lead."""

    lead_id: str
    status: Literal["received"] = "received"
    duplicate: bool
