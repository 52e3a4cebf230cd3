"""handoff's tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, Index, Integer, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from baton.consumer import LeadSet
from baton.db import Base, UTCDateTime
from baton.events import utcnow
from baton_handoff.domain import LEAD_HOLDING_STATUSES, QUEUED

# A JSON column given None stores the JSON value null by default, which a NOT NULL column accepts;
# with none_as_null the database refuses a missing list instead.
_JSON = JSON(none_as_null=True)
# Written out rather than bound, so that a statement's ON CONFLICT target matches the partial index below.
OPEN_ASSIGNMENT = text("status IN ({})".format(", ".join(f"'{status}'" for status in sorted(LEAD_HOLDING_STATUSES))))
# The clocks the SLA scheduler scans: the accept clock runs while assigned, the touch clock until contacted.
ACCEPT_CLOCK_RUNNING = text("status = 'assigned'")
TOUCH_CLOCK_RUNNING = text("status IN ('accepted', 'assigned')")
IN_QUEUE = text(f"status = '{QUEUED}'")


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
    """A lead handed to a rep (or waiting in a team's queue for one), with its SLA deadlines and where it stands."""

    __tablename__ = "assignments"
    __table_args__ = (
        # One open or queued assignment per lead, whatever the code does: a second lead.qualified
        # routed concurrently fails.
        Index(
            "uq_assignments_open_lead",
            "lead_id",
            unique=True,
            postgresql_where=OPEN_ASSIGNMENT,
            sqlite_where=OPEN_ASSIGNMENT,
        ),
        Index(
            "ix_assignments_accept_due_at",
            "accept_due_at",
            postgresql_where=ACCEPT_CLOCK_RUNNING,
            sqlite_where=ACCEPT_CLOCK_RUNNING,
        ),
        Index(
            "ix_assignments_touch_due_at",
            "touch_due_at",
            postgresql_where=TOUCH_CLOCK_RUNNING,
            sqlite_where=TOUCH_CLOCK_RUNNING,
        ),
        Index("ix_assignments_queued", "seq", postgresql_where=IN_QUEUE, sqlite_where=IN_QUEUE),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    lead_id: Mapped[str] = mapped_column(String(64), index=True)
    rep_id: Mapped[str | None] = mapped_column(String(100), index=True)
    team: Mapped[str | None] = mapped_column(String(100))
    rule: Mapped[str] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="assigned")
    lead: Mapped[dict[str, Any]] = mapped_column(_JSON)
    decision: Mapped[dict[str, Any]] = mapped_column(_JSON)
    reason: Mapped[str | None] = mapped_column(String(500))
    amount: Mapped[float | None] = mapped_column(Numeric(14, 2))
    accept_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    touch_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    accept_at_risk_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    touch_at_risk_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sla_clock: Mapped[str] = mapped_column(String(16), default="business_hours")
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    fallback_team: Mapped[str | None] = mapped_column(String(100))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class RoutingCursor(Base):
    """The routing lock: its row is locked while leads are routed, so replicas take turns."""

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


class Account(Base):
    """A customer or target account: leads from its e-mail domain go to its owner when the owner can take them."""

    __tablename__ = "accounts"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_rep_id: Mapped[str] = mapped_column(String(100), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RoutingRule(Base):
    """A routing rule: conditions on a lead's attributes, the team and method it routes by, and its SLA."""

    __tablename__ = "routing_rules"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    priority: Mapped[int] = mapped_column(Integer, unique=True)
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(_JSON, default=list)
    team: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(32))
    sla: Mapped[dict[str, Any]] = mapped_column(_JSON)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    fallback_team: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RoutingPool(Base):
    """Where a rule's rotation stands (a pool is named after its rule): the last rep chosen and the weights."""

    __tablename__ = "routing_pools"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_rep_id: Mapped[str | None] = mapped_column(String(100))
    current_weights: Mapped[dict[str, int]] = mapped_column(_JSON, default=dict)


class ErasedLead(Base):
    """A lead whose person asked to be forgotten: its assignments keep no personal data; it is never routed again."""

    __tablename__ = "handoff_erased_leads"

    lead_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime())


ERASED_LEADS = LeadSet(ErasedLead.lead_id)
"""The erased leads, looked up once per batch of events."""
