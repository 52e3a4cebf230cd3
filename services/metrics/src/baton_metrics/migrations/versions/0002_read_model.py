"""metrics: duration buckets, assignment clocks, lead progress, journeys, targets and campaign costs.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "duration_buckets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("rep_id", sa.String(100), nullable=False),
        sa.Column("measure", sa.String(64), nullable=False),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.UniqueConstraint(
            "day", "source", "campaign", "team", "rep_id", "measure", "bucket", name="uq_duration_buckets_cell"
        ),
    )
    op.create_table(
        "assignment_clocks",
        sa.Column("assignment_id", sa.String(64), primary_key=True),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("rep_id", sa.String(100), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accept_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("touch_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "lead_progress",
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("rep_id", sa.String(100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("qualified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("erased", sa.Boolean, nullable=False),
    )
    op.create_table(
        "journey_steps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rep_id", sa.String(100), nullable=True),
        sa.Column("team", sa.String(100), nullable=True),
        sa.Column("facts", sa.JSON, nullable=False),
    )
    op.create_index("ix_journey_steps_lead", "journey_steps", ["lead_id", "occurred_at"])
    op.create_table(
        "targets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mqls_per_month", sa.Integer, nullable=True),
        sa.Column("sla_compliance", sa.Numeric(5, 4), nullable=True),
        sa.Column("speed_to_lead_minutes", sa.Numeric(10, 2), nullable=True),
    )
    op.create_table(
        "campaign_costs",
        sa.Column("campaign", sa.String(200), primary_key=True),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("campaign_costs")
    op.drop_table("targets")
    op.drop_index("ix_journey_steps_lead", table_name="journey_steps")
    op.drop_table("journey_steps")
    op.drop_table("lead_progress")
    op.drop_table("assignment_clocks")
    op.drop_table("duration_buckets")
