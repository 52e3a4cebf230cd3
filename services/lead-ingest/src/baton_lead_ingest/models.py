"""lead-ingest's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from baton.db import Base, UTCDateTime
from baton.events import utcnow


class Lead(Base):
    """A person marketing sent us, one row per normalised e-mail address."""

    __tablename__ = "leads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(300))
    title: Mapped[str | None] = mapped_column(String(300))
    phone: Mapped[str | None] = mapped_column(String(64))
    country: Mapped[str | None] = mapped_column(String(64))
    company_size: Mapped[int | None] = mapped_column(Integer)
    industry: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(200))
    campaign: Mapped[str | None] = mapped_column(String(200))
    utm: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    external_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IdempotentAnswer(Base):
    """The answer given to a caller's ``Idempotency-Key``, returned again when the caller repeats the request."""

    __tablename__ = "idempotent_answers"

    caller: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Source(Base):
    """A tool that posts leads by webhook, how its requests prove themselves and how its payload maps to a lead.

    Secrets are kept encrypted (``secrets.SecretBox``): the signed methods compute an HMAC keyed with the secret
    itself, so it must be recoverable. The previous secret keeps verifying until ``previous_secret_until``.
    """

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    preset: Mapped[str | None] = mapped_column(String(64))
    field_map: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))
    verification: Mapped[str] = mapped_column(String(32))
    default_campaign: Mapped[str | None] = mapped_column(String(200))
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    secret: Mapped[str] = mapped_column(Text)
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QuarantinedPayload(Base):
    """A webhook that verified but could not become a lead, kept with its raw body until it is replayed."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_source_id", "source", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    content_type: Mapped[str | None] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    body_encoding: Mapped[str] = mapped_column(String(16))
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    delivery_key: Mapped[str | None] = mapped_column(String(300))
    email_normalized: Mapped[str | None] = mapped_column(String(320), index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lead_ids: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))


class ErasedLead(Base):
    """A lead whose person asked to be forgotten: only its id and when, so that a repeated request is answered."""

    __tablename__ = "erased_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime())
