"""handoff's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, Integer, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from baton.db import Base, UTCDateTime
from baton.events import utcnow
from baton_handoff.domain import OPEN_STATUSES

# A JSON column given None stores the JSON value null by default, which a NOT NULL column accepts;
# with none_as_null the database refuses a missing list instead.
_JSON = JSON(none_as_null=True)
# Written out rather than bound, so that a statement's ON CONFLICT target matches the partial index below.
OPEN_ASSIGNMENT = text("status IN ({})".format(", ".join(f"'{status}'" for status in sorted(OPEN_STATUSES))))


class Rep(Base):
    """A sales rep who can be handed leads."""

    __tablename__ = "reps"

    rep_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    team: Mapped[str | None] = mapped_column(String(100))
    territories: Mapped[list[str]] = mapped_column(_JSON, default=list)
    segments: Mapped[list[str]] = mapped_column(_JSON, default=list)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    capacity: Mapped[int] = mapped_column(Integer, default=50)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    working_hours: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
    status: Mapped[str] = mapped_column(String(16), default="available")
    ooo_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Assignment(Base):
    """A lead handed to a rep, with its SLA deadlines and where it stands."""

    __tablename__ = "assignments"
    __table_args__ = (
        # One open assignment per lead, whatever the code does: a second lead.qualified routed concurrently fails.
        Index(
            "uq_assignments_open_lead",
            "lead_id",
            unique=True,
            postgresql_where=OPEN_ASSIGNMENT,
            sqlite_where=OPEN_ASSIGNMENT,
        ),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    rep_id: Mapped[str] = mapped_column(String(100), index=True)
    team: Mapped[str | None] = mapped_column(String(100))
    rule: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="assigned")
    lead: Mapped[dict[str, Any]] = mapped_column(_JSON)
    decision: Mapped[dict[str, Any]] = mapped_column(_JSON)
    reason: Mapped[str | None] = mapped_column(String(500))
    amount: Mapped[float | None] = mapped_column(Numeric(14, 2))
    accept_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    touch_due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class RoutingCursor(Base):
    """Where round-robin stands; its row is locked while a lead is routed so replicas take turns."""

    __tablename__ = "routing_cursors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_rep_id: Mapped[str | None] = mapped_column(String(100))


class RepWorkload(Base):
    """How many open assignments a rep holds, changed in the transaction that opens or closes one.

    Routing reads one row per rep instead of counting assignments; rows outlive their rep, so a rep
    deleted and added again keeps the count of the assignments still open in their name.
    """

    __tablename__ = "rep_workloads"
    __table_args__ = (CheckConstraint("open_assignments >= 0", name="ck_rep_workloads_open_assignments"),)

    rep_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    open_assignments: Mapped[int] = mapped_column(Integer, default=0)
