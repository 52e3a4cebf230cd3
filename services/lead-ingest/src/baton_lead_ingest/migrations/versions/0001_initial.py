"""lead-ingest: leads, idempotent answers, outbox and inbox.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from baton.migration_ops import create_messaging_tables_v1, drop_messaging_tables_v1

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "leads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("email_normalized", sa.String(320), nullable=False, unique=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("first_name", sa.String(200)),
        sa.Column("last_name", sa.String(200)),
        sa.Column("company", sa.String(300)),
        sa.Column("title", sa.String(300)),
        sa.Column("phone", sa.String(64)),
        sa.Column("country", sa.String(64)),
        sa.Column("company_size", sa.Integer),
        sa.Column("industry", sa.String(200)),
        sa.Column("source", sa.String(200)),
        sa.Column("campaign", sa.String(200)),
        sa.Column("utm", sa.JSON, nullable=False),
        sa.Column("external_id", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "idempotent_answers",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("duplicate", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    create_messaging_tables_v1(op)


def downgrade() -> None:
    drop_messaging_tables_v1(op)
    op.drop_table("idempotent_answers")
    op.drop_table("leads")
