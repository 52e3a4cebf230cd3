"""metrics: KPI counters, outbox and inbox.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from baton.migration_ops import create_messaging_tables_v1, drop_messaging_tables_v1

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "kpi_counters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("campaign", sa.String(200), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("rep_id", sa.String(100), nullable=False),
        sa.Column("kpi", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("amount", sa.Numeric(16, 2), nullable=False),
        sa.UniqueConstraint("day", "source", "campaign", "team", "rep_id", "kpi", name="uq_kpi_counters_cell"),
    )
    create_messaging_tables_v1(op)


def downgrade() -> None:
    drop_messaging_tables_v1(op)
    op.drop_table("kpi_counters")
