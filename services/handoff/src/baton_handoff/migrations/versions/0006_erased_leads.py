"""handoff: the leads whose person asked to be forgotten, and a lead's webhook deliveries found by its id.

Joins the branches 0003, 0004 and 0005 grew from 0002.

Revision ID: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = ("0003", "0004", "0005")


def upgrade() -> None:
    op.create_table(
        "handoff_erased_leads",
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_lead_id", "webhook_deliveries", ["lead_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_lead_id", table_name="webhook_deliveries")
    op.drop_table("handoff_erased_leads")
