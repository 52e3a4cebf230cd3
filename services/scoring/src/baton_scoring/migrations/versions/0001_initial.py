"""scoring: model versions (seeded with the default model), lead scores, history, outbox and inbox.

Revision ID: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from baton.migration_ops import create_messaging_tables_v1, drop_messaging_tables_v1

revision = "0001"
down_revision = None

# The default model as version 1 was first seeded; a later default is a new version, not a change here.
FIRST_MODEL = {
    "fit_rules": [
        {
            "name": "title: vice president",
            "attribute": "title",
            "contains_any": ["vp", "vice president"],
            "min_value": None,
            "max_value": None,
            "points": 25,
            "disqualifies": False,
        },
        {
            "name": "title: executive",
            "attribute": "title",
            "contains_any": ["chief", "ceo", "cto", "cfo", "cmo", "coo", "founder", "president"],
            "min_value": None,
            "max_value": None,
            "points": 30,
            "disqualifies": False,
        },
        {
            "name": "title: director or head",
            "attribute": "title",
            "contains_any": ["director", "head of"],
            "min_value": None,
            "max_value": None,
            "points": 20,
            "disqualifies": False,
        },
        {
            "name": "title: manager",
            "attribute": "title",
            "contains_any": ["manager", "lead"],
            "min_value": None,
            "max_value": None,
            "points": 10,
            "disqualifies": False,
        },
        {
            "name": "company size: enterprise",
            "attribute": "company_size",
            "contains_any": [],
            "min_value": 1000,
            "max_value": None,
            "points": 15,
            "disqualifies": False,
        },
        {
            "name": "company size: mid-market",
            "attribute": "company_size",
            "contains_any": [],
            "min_value": 200,
            "max_value": 999,
            "points": 10,
            "disqualifies": False,
        },
        {
            "name": "company size: small business",
            "attribute": "company_size",
            "contains_any": [],
            "min_value": 50,
            "max_value": 199,
            "points": 5,
            "disqualifies": False,
        },
        {
            "name": "free-mail domain",
            "attribute": "email_domain",
            "contains_any": ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"],
            "min_value": None,
            "max_value": None,
            "points": -10,
            "disqualifies": False,
        },
    ],
    "grade_thresholds": {"A": 40, "B": 25, "C": 10},
    "engagement_points": {"email_click": 3, "content_download": 5, "pricing_page_view": 8, "webinar_attended": 10},
    "engagement_cap": 50,
    "decay_half_life_days": 30.0,
    "hand_raisers": ["demo_request"],
    "mql_threshold": 40,
    "min_fit_grade": "C",
}


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
    create_messaging_tables_v1(op)
    op.bulk_insert(
        versions,
        [{"version": 1, "definition": FIRST_MODEL, "created_at": datetime.now(UTC)}],
    )


def downgrade() -> None:
    drop_messaging_tables_v1(op)
    op.drop_table("score_history")
    op.drop_table("lead_scores")
    op.drop_table("model_versions")
