"""metrics' tables."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sqlalchemy import Date, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from baton.db import Base


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
