"""lead-ingest: webhook sources, the quarantine of payloads that could not become leads, erased leads.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("preset", sa.String(64)),
        sa.Column("field_map", sa.JSON),
        sa.Column("verification", sa.String(32), nullable=False),
        sa.Column("default_campaign", sa.String(200)),
        sa.Column("rate_limit_per_minute", sa.Integer),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("errors", sa.JSON, nullable=False),
        sa.Column("content_type", sa.String(200)),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("body_encoding", sa.String(16), nullable=False),
        sa.Column("headers", sa.JSON, nullable=False),
        sa.Column("delivery_key", sa.String(300)),
        sa.Column("email_normalized", sa.String(320)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
        sa.Column("lead_ids", sa.JSON),
    )
    op.create_index("ix_quarantine_source_id", "quarantine", ["source", "id"])
    op.create_index("ix_quarantine_email_normalized", "quarantine", ["email_normalized"])
    op.create_table(
        "erased_leads",
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erased_leads")
    op.drop_index("ix_quarantine_email_normalized", table_name="quarantine")
    op.drop_index("ix_quarantine_source_id", table_name="quarantine")
    op.drop_table("quarantine")
    op.drop_table("sources")
