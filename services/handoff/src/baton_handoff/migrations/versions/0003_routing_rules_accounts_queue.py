"""handoff: routing rules, accounts, rotation pools; queued assignments and SLA policy on each assignment.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

OPEN_BEFORE = "status IN ('accepted', 'assigned', 'contacted', 'qualified')"
OPEN_OR_QUEUED = "status IN ('accepted', 'assigned', 'contacted', 'qualified', 'queued')"
ACCEPT_CLOCK_RUNNING = "status = 'assigned'"
TOUCH_CLOCK_RUNNING = "status IN ('accepted', 'assigned')"
IN_QUEUE = "status = 'queued'"
# Assignments made before rules existed had wall-clock deadlines and the rule set's default attempts.
FILLED_IN = {"sla_clock": sa.text("'wall_clock'"), "max_attempts": sa.text("3"), "escalated": sa.text("false")}


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.drop_index("uq_assignments_open_lead", table_name="assignments")
    with op.batch_alter_table("assignments") as batch:
        batch.alter_column("rep_id", existing_type=sa.String(100), nullable=True)
        batch.alter_column("accept_due_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.alter_column("touch_due_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch.add_column(sa.Column("accept_at_risk_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("touch_at_risk_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("sla_clock", sa.String(16), nullable=False, server_default=FILLED_IN["sla_clock"]))
        batch.add_column(
            sa.Column("max_attempts", sa.Integer, nullable=False, server_default=FILLED_IN["max_attempts"])
        )
        batch.add_column(sa.Column("fallback_team", sa.String(100)))
        batch.add_column(sa.Column("escalated", sa.Boolean, nullable=False, server_default=FILLED_IN["escalated"]))
    # The defaults only filled in the rows already there; new rows always say what they are.
    with op.batch_alter_table("assignments") as batch:
        for name in FILLED_IN:
            batch.alter_column(name, server_default=None)
    op.create_index(
        "uq_assignments_open_lead",
        "assignments",
        ["lead_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_OR_QUEUED),
        sqlite_where=sa.text(OPEN_OR_QUEUED),
    )
    op.create_index(
        "ix_assignments_accept_due_at",
        "assignments",
        ["accept_due_at"],
        postgresql_where=sa.text(ACCEPT_CLOCK_RUNNING),
        sqlite_where=sa.text(ACCEPT_CLOCK_RUNNING),
    )
    op.create_index(
        "ix_assignments_touch_due_at",
        "assignments",
        ["touch_due_at"],
        postgresql_where=sa.text(TOUCH_CLOCK_RUNNING),
        sqlite_where=sa.text(TOUCH_CLOCK_RUNNING),
    )
    op.create_index(
        "ix_assignments_queued",
        "assignments",
        ["seq"],
        postgresql_where=sa.text(IN_QUEUE),
        sqlite_where=sa.text(IN_QUEUE),
    )
    op.create_table(
        "accounts",
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner_rep_id", sa.String(100), nullable=False),
        *_timestamps(),
    )
    op.create_index("ix_accounts_owner_rep_id", "accounts", ["owner_rep_id"])
    op.create_table(
        "routing_rules",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("priority", sa.Integer, nullable=False, unique=True),
        sa.Column("conditions", sa.JSON, nullable=False),
        sa.Column("team", sa.String(100)),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("sla", sa.JSON, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("fallback_team", sa.String(100)),
        *_timestamps(),
    )
    op.create_table(
        "routing_pools",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("last_rep_id", sa.String(100)),
        sa.Column("current_weights", sa.JSON, nullable=False),
    )
    # The default rule's rotation carries on where the single round-robin cursor stood.
    op.execute(
        "INSERT INTO routing_pools (name, last_rep_id, current_weights) "
        "SELECT name, last_rep_id, '{}' FROM routing_cursors WHERE name = 'default'"
    )


def downgrade() -> None:
    op.drop_table("routing_pools")
    op.drop_table("routing_rules")
    op.drop_index("ix_accounts_owner_rep_id", table_name="accounts")
    op.drop_table("accounts")
    op.drop_index("ix_assignments_queued", table_name="assignments")
    op.drop_index("ix_assignments_touch_due_at", table_name="assignments")
    op.drop_index("ix_assignments_accept_due_at", table_name="assignments")
    op.drop_index("uq_assignments_open_lead", table_name="assignments")
    # Before 0003 every assignment had a rep and deadlines: queued ones leave the queue as closed.
    op.execute(
        "UPDATE assignments SET status = 'reassigned', rep_id = '', reason = 'closed: left the fallback queue' "
        "WHERE rep_id IS NULL"
    )
    op.execute("UPDATE assignments SET accept_due_at = created_at WHERE accept_due_at IS NULL")
    op.execute("UPDATE assignments SET touch_due_at = created_at WHERE touch_due_at IS NULL")
    with op.batch_alter_table("assignments") as batch:
        for name in ("escalated", "fallback_team", "max_attempts", "sla_clock", "touch_at_risk_at"):
            batch.drop_column(name)
        batch.drop_column("accept_at_risk_at")
        batch.alter_column("touch_due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("accept_due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("rep_id", existing_type=sa.String(100), nullable=False)
    op.create_index(
        "uq_assignments_open_lead",
        "assignments",
        ["lead_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_BEFORE),
        sqlite_where=sa.text(OPEN_BEFORE),
    )
