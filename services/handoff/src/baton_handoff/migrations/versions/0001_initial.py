"""handoff: reps, assignments, routing cursor, outbox and inbox.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from baton.migration_ops import create_messaging_tables_v1, drop_messaging_tables_v1

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "reps",
        sa.Column("rep_id", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("team", sa.String(100)),
        sa.Column("territories", sa.JSON, nullable=False),
        sa.Column("segments", sa.JSON, nullable=False),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("working_hours", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ooo_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "assignments",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("rep_id", sa.String(100), nullable=False),
        sa.Column("team", sa.String(100)),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lead", sa.JSON, nullable=False),
        sa.Column("decision", sa.JSON, nullable=False),
        sa.Column("reason", sa.String(500)),
        sa.Column("amount", sa.Numeric(14, 2)),
        sa.Column("accept_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("touch_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_assignments_lead_id", "assignments", ["lead_id"])
    op.create_index("ix_assignments_rep_id", "assignments", ["rep_id"])
    op.create_index("ix_assignments_updated_at", "assignments", ["updated_at"])
    cursors = op.create_table(
        "routing_cursors",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("last_rep_id", sa.String(100)),
    )
    op.bulk_insert(cursors, [{"name": "default", "last_rep_id": None}])
    create_messaging_tables_v1(op)


def downgrade() -> None:
    drop_messaging_tables_v1(op)
    op.drop_table("routing_cursors")
    op.drop_table("assignments")
    op.drop_table("reps")
