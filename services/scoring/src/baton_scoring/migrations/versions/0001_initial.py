"""scoring: model versions (seeded with the default model), lead scores, history, outbox and inbox.

Revision ID: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from baton.outbox import create_messaging_tables
from baton_scoring.domain import DEFAULT_MODEL

revision = "0001"
down_revision = None


def upgrade() -> None:
    versions = op.create_table(
        "model_versions",
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("definition", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "lead_scores",
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("activities", sa.JSON, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("fit_grade", sa.String(1), nullable=False),
        sa.Column("engagement", sa.Integer, nullable=False),
        sa.Column("breakdown", sa.JSON, nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("qualified_at", sa.DateTime(timezone=True)),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "score_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("lead_id", sa.String(64), sa.ForeignKey("lead_scores.lead_id", ondelete="CASCADE"), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("fit_grade", sa.String(1), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_score_history_lead_id", "score_history", ["lead_id"])
    create_messaging_tables(op)
    op.bulk_insert(
        versions,
        [{"version": 1, "definition": DEFAULT_MODEL.model_dump(mode="json"), "created_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    op.drop_table("score_history")
    op.drop_table("lead_scores")
    op.drop_table("model_versions")
