"""lead-ingest: Idempotency-Keys belong to the caller and remember the request they answered.

Answers given before this revision were keyed for everyone at once and hold no request hash, so
they cannot be told apart by caller or compared with a repeat; they are dropped (a key only guards
a client's retries). Downgrading drops the per-caller answers the same way.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.drop_table("idempotent_answers")
    op.create_table(
        "idempotent_answers",
        sa.Column("caller", sa.Text, primary_key=True),
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotent_answers")
    op.create_table(
        "idempotent_answers",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("lead_id", sa.String(64), nullable=False),
        sa.Column("duplicate", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
