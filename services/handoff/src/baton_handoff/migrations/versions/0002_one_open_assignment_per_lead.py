"""handoff: at most one open assignment per lead, and each rep's open-assignment count.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

OPEN = "status IN ('accepted', 'assigned', 'contacted', 'qualified')"


def upgrade() -> None:
    # Routing used to check for an open assignment before taking its lock, so a lead may hold two;
    # the oldest stays, the later ones close, or the unique index below could not be built.
    op.execute(
        "UPDATE assignments SET status = 'reassigned', reason = 'closed: a duplicate of the lead''s older assignment' "
        f"WHERE {OPEN} AND EXISTS (SELECT 1 FROM assignments AS older "
        f"WHERE older.lead_id = assignments.lead_id AND older.{OPEN} AND older.seq < assignments.seq)"
    )
    op.create_index(
        "uq_assignments_open_lead",
        "assignments",
        ["lead_id"],
        unique=True,
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )
    op.create_table(
        "rep_workloads",
        sa.Column("rep_id", sa.String(100), primary_key=True),
        sa.Column("open_assignments", sa.Integer, nullable=False),
        sa.CheckConstraint("open_assignments >= 0", name="ck_rep_workloads_open_assignments"),
    )
    op.execute(
        "INSERT INTO rep_workloads (rep_id, open_assignments) "
        f"SELECT rep_id, SUM(CASE WHEN {OPEN} THEN 1 ELSE 0 END) FROM "
        "(SELECT rep_id, status FROM assignments UNION ALL SELECT rep_id, NULL FROM reps) AS held GROUP BY rep_id"
    )


def downgrade() -> None:
    op.drop_table("rep_workloads")
    op.drop_index("uq_assignments_open_lead", table_name="assignments")
