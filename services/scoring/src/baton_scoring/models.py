"""scoring's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from baton.db import Base, UTCDateTime
from baton.events import utcnow


class ModelVersion(Base):
    """One version of the scoring model; versions are never changed, only added."""

    __tablename__ = "model_versions"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LeadScore(Base):
    """A lead's facts, activities and current score, and its qualification cycle.

    ``cycle`` counts the lead's trips to sales: it starts at 1 and grows when handoff recycles the lead;
    ``status`` is ``mql`` once the lead qualified in the current cycle. ``scored_at`` is the time the score
    is as of (the time of the last event applied), not when it was computed.
    """

    __tablename__ = "lead_scores"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str | None] = mapped_column(String(100))
    campaign: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    account_domain: Mapped[str | None] = mapped_column(String(253), index=True)
    cycle: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    cycle_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON)
    activities: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    score: Mapped[int] = mapped_column(Integer, default=0)
    fit_grade: Mapped[str] = mapped_column(String(1), default="D")
    engagement: Mapped[int] = mapped_column(Integer, default=0)
    engagement_exact: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    """Engagement before rounding, as of ``scored_at``: what the lead adds to its account."""
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="nurture")
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Account(Base):
    """An account's engagement, kept as its people's contributions are added and taken back (see
    ``engine.AccountEngagement``): the sum over the leads whose ``account_domain`` it is of ``engagement_exact``
    as of ``scored_at``, decayed with ``half_life_days``."""

    __tablename__ = "scoring_accounts"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    half_life_days: Mapped[float] = mapped_column(Float)
    reference_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    weight: Mapped[float] = mapped_column(Float, default=0.0)
    as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ScoreHistory(Base):
    """Every score a lead has had, newest last."""

    __tablename__ = "score_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), ForeignKey("lead_scores.lead_id", ondelete="CASCADE"), index=True)
    score: Mapped[int] = mapped_column(Integer)
    fit_grade: Mapped[str] = mapped_column(String(1))
    model_version: Mapped[int] = mapped_column(Integer)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    engagement: Mapped[int | None] = mapped_column(Integer)
    breakdown: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    cause: Mapped[str | None] = mapped_column(String(32), doc="What rescored it: received, updated, activity, rescore.")


class ErasedLead(Base):
    """A lead whose person asked to be forgotten: its score is gone, and later events for it are ignored."""

    __tablename__ = "scoring_erased_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MqlOutcome(Base):
    """What sales did with a lead qualified in one cycle, for calibration; nothing in it names the person."""

    __tablename__ = "mql_outcomes"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cycle: Mapped[int] = mapped_column(Integer, primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    fit_grade: Mapped[str] = mapped_column(String(1))
    reason: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[int] = mapped_column(Integer)
    qualified_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    accepted: Mapped[bool] = mapped_column(Boolean, default=False)
    rejected_reason: Mapped[str | None] = mapped_column(String(100))
    sales_qualified: Mapped[bool] = mapped_column(Boolean, default=False)
    won: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RescoreJob(Base):
    """A rescore of all or some leads under the model in force, worked through in lead-id order."""

    __tablename__ = "rescore_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True, doc="queued, running, done or failed.")
    lead_filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    model_version: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer, default=0)
    processed: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    after_lead_id: Mapped[str | None] = mapped_column(String(64), doc="The last lead done; the next starts after it.")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
