"""metrics' tables.

Counters and distribution buckets hold anonymous totals. ``assignment_clocks`` and ``lead_progress``
hold what later events need to be counted (deadlines, the time each pipeline step happened, a lead's
source and campaign); neither holds personal data. ``journey_steps`` holds each lead's events with
their non-personal facts, and is deleted when the lead is erased.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from baton.db import Base, UTCDateTime


class KpiCounter(Base):
    """One running total: a KPI on a day for a source, campaign, team and rep ('' when unknown)."""

    __tablename__ = "kpi_counters"
    __table_args__ = (
        UniqueConstraint("day", "source", "campaign", "team", "rep_id", "kpi", name="uq_kpi_counters_cell"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(200))
    campaign: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(100))
    rep_id: Mapped[str] = mapped_column(String(100))
    kpi: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[Decimal] = mapped_column(Numeric(16, 2), default=0)


class DurationBucket(Base):
    """How many durations of a measure fell in one log-spaced bucket, on a day for a source, campaign, team and rep."""

    __tablename__ = "duration_buckets"
    __table_args__ = (
        UniqueConstraint(
            "day", "source", "campaign", "team", "rep_id", "measure", "bucket", name="uq_duration_buckets_cell"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(200))
    campaign: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(100))
    rep_id: Mapped[str] = mapped_column(String(100))
    measure: Mapped[str] = mapped_column(String(64))
    bucket: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer, default=0)


class AssignmentClock(Base):
    """An assignment whose accept or touch SLA is still running: its deadlines and when it was made."""

    __tablename__ = "assignment_clocks"

    assignment_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lead_id: Mapped[str] = mapped_column(String(64))
    rep_id: Mapped[str] = mapped_column(String(100))
    team: Mapped[str] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(200))
    campaign: Mapped[str] = mapped_column(String(200))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accept_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    touch_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class LeadProgress(Base):
    """When a lead passed each step of the pipeline (the first time), and the source, campaign, team and rep it has."""

    __tablename__ = "lead_progress"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(200))
    campaign: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(100))
    rep_id: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    first_scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    erased: Mapped[bool] = mapped_column(Boolean, default=False)


class JourneyStep(Base):
    """One event of a lead's journey: its type, when it happened and its non-personal facts."""

    __tablename__ = "journey_steps"
    __table_args__ = (Index("ix_journey_steps_lead", "lead_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rep_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    team: Mapped[str | None] = mapped_column(String(100), nullable=True)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)


class Targets(Base):
    """The KPI targets ops set (one row): MQLs a month, SLA compliance and speed-to-lead."""

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mqls_per_month: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sla_compliance: Mapped[float | None] = mapped_column(Numeric(5, 4, asdecimal=False), nullable=True)
    speed_to_lead_minutes: Mapped[float | None] = mapped_column(Numeric(10, 2, asdecimal=False), nullable=True)


class CampaignCost(Base):
    """What a campaign cost, in its currency."""

    __tablename__ = "campaign_costs"

    campaign: Mapped[str] = mapped_column(String(200), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(16, 2))
    currency: Mapped[str] = mapped_column(String(3))
