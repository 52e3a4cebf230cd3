"""scoring's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
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
    """A lead's facts, activities and current score."""

    __tablename__ = "lead_scores"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON)
    activities: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    score: Mapped[int] = mapped_column(Integer, default=0)
    fit_grade: Mapped[str] = mapped_column(String(1), default="D")
    engagement: Mapped[int] = mapped_column(Integer, default=0)
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="nurture")
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ScoreHistory(Base):
    """Every score a lead has had, newest last."""

    __tablename__ = "score_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(String(64), ForeignKey("lead_scores.lead_id", ondelete="CASCADE"), index=True)
    score: Mapped[int] = mapped_column(Integer)
    fit_grade: Mapped[str] = mapped_column(String(1))
    model_version: Mapped[int] = mapped_column(Integer)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ErasedLead(Base):
    """A lead whose person asked to be forgotten: its score is gone, and later events for it are ignored."""

    __tablename__ = "scoring_erased_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime())
