"""scoring: the model as versioned data (version 2), the facts the engine and simulate read, qualification
cycles, sales' outcomes of MQLs for calibration, and rescore jobs.

Revision ID: 0003
"""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

# The default model as version 2 was first written; a later default is a new version, not a change here.
SECOND_MODEL: dict[str, Any] = {
    "fit_rules": [
        {
            "name": "title: vice president",
            "points": 25,
            "disqualifies": False,
            "group": "title",
            "op": "contains_word",
            "attribute": "title",
            "words": ["vp", "vice president"],
        },
        {
            "name": "title: executive",
            "points": 30,
            "disqualifies": False,
            "group": "title",
            "op": "contains_word",
            "attribute": "title",
            "words": ["chief", "ceo", "cto", "cfo", "cmo", "coo", "founder", "president"],
        },
        {
            "name": "title: director or head",
            "points": 20,
            "disqualifies": False,
            "group": "title",
            "op": "contains_word",
            "attribute": "title",
            "words": ["director", "head of"],
        },
        {
            "name": "title: manager",
            "points": 10,
            "disqualifies": False,
            "group": "title",
            "op": "contains_word",
            "attribute": "title",
            "words": ["manager", "lead"],
        },
        {
            "name": "company size: enterprise",
            "points": 15,
            "disqualifies": False,
            "group": "company size",
            "op": "range",
            "attribute": "company_size",
            "min": 1000,
            "max": None,
        },
        {
            "name": "company size: mid-market",
            "points": 10,
            "disqualifies": False,
            "group": "company size",
            "op": "range",
            "attribute": "company_size",
            "min": 200,
            "max": 999,
        },
        {
            "name": "company size: small business",
            "points": 5,
            "disqualifies": False,
            "group": "company size",
            "op": "range",
            "attribute": "company_size",
            "min": 50,
            "max": 199,
        },
        {
            "name": "free-mail domain",
            "points": -10,
            "disqualifies": False,
            "group": None,
            "op": "email_domain_in",
            "attribute": "email_domain",
            "domains": ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"],
        },
    ],
    "grade_thresholds": {"A": 40, "B": 25, "C": 10},
    "engagement": {
        "email_click": {"points": 3, "cap": None},
        "content_download": {"points": 5, "cap": None},
        "pricing_page_view": {"points": 8, "cap": None},
        "webinar_attended": {"points": 10, "cap": None},
    },
    "engagement_cap": 50,
    "half_life_days": 30.0,
    "hand_raisers": ["demo_request"],
    "free_mail_domains": ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com"],
    "mql_threshold": 40,
    "min_grade": "C",
}

FREE_MAIL_DOMAINS = frozenset({"gmail.com", "yahoo.com", "hotmail.com", "outlook.com"})


def _account_domain(attributes: dict[str, Any]) -> str | None:
    email = attributes.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    domain = email.rpartition("@")[2].strip().lower()
    if not domain:
        return None
    labels = domain.split(".")
    if any(".".join(labels[i:]) in FREE_MAIL_DOMAINS for i in range(len(labels))):
        return None
    return domain[:253]


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch rebuild: on SQLite rebuilding lead_scores would cascade into its history.
    op.add_column("lead_scores", sa.Column("source", sa.String(100)))
    op.add_column("lead_scores", sa.Column("campaign", sa.String(200)))
    op.add_column("lead_scores", sa.Column("received_at", sa.DateTime(timezone=True)))
    op.add_column("lead_scores", sa.Column("account_domain", sa.String(253)))
    op.add_column("lead_scores", sa.Column("cycle", sa.Integer, nullable=False, server_default=sa.text("1")))
    op.add_column("lead_scores", sa.Column("cycle_started_at", sa.DateTime(timezone=True)))
    lead_scores = sa.table(
        "lead_scores",
        sa.column("lead_id", sa.String),
        sa.column("attributes", sa.JSON),
        sa.column("scored_at", sa.DateTime(timezone=True)),
        sa.column("received_at", sa.DateTime(timezone=True)),
        sa.column("source", sa.String),
        sa.column("campaign", sa.String),
        sa.column("account_domain", sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(lead_scores.c.lead_id, lead_scores.c.attributes, lead_scores.c.scored_at))
    for lead_id, attributes, scored_at in rows.all():
        facts = attributes if isinstance(attributes, dict) else {}
        connection.execute(
            lead_scores.update()
            .where(lead_scores.c.lead_id == lead_id)
            .values(
                received_at=scored_at,
                source=_text(facts.get("source"), 100),
                campaign=_text(facts.get("campaign"), 200),
                account_domain=_account_domain(facts),
            )
        )
    op.create_index("ix_lead_scores_account_domain", "lead_scores", ["account_domain"])
    op.create_index("ix_lead_scores_received_at", "lead_scores", ["received_at"])
    op.add_column("score_history", sa.Column("engagement", sa.Integer))
    op.add_column("score_history", sa.Column("breakdown", sa.JSON))
    op.add_column("score_history", sa.Column("cause", sa.String(32)))
    op.create_table(
        "mql_outcomes",
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("cycle", sa.Integer, primary_key=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("fit_grade", sa.String(1), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("qualified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted", sa.Boolean, nullable=False),
        sa.Column("rejected_reason", sa.String(100)),
        sa.Column("sales_qualified", sa.Boolean, nullable=False),
        sa.Column("won", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_mql_outcomes_qualified_at", "mql_outcomes", ["qualified_at"])
    op.create_table(
        "rescore_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lead_filter", sa.JSON, nullable=False),
        sa.Column("model_version", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("processed", sa.Integer, nullable=False),
        sa.Column("changed", sa.Integer, nullable=False),
        sa.Column("after_lead_id", sa.String(64)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("error", sa.String(500)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_rescore_jobs_status", "rescore_jobs", ["status"])
    versions = sa.table(
        "model_versions",
        sa.column("version", sa.Integer),
        sa.column("definition", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.bulk_insert(versions, [{"version": 2, "definition": SECOND_MODEL, "created_at": datetime.now(UTC)}])


def _text(value: object, length: int) -> str | None:
    return value[:length] if isinstance(value, str) else None


def downgrade() -> None:
    # Before 0003 only the first model's shape could be read: later versions go.
    op.execute("DELETE FROM model_versions WHERE version >= 2")
    op.drop_index("ix_rescore_jobs_status", table_name="rescore_jobs")
    op.drop_table("rescore_jobs")
    op.drop_index("ix_mql_outcomes_qualified_at", table_name="mql_outcomes")
    op.drop_table("mql_outcomes")
    for name in ("cause", "breakdown", "engagement"):
        op.drop_column("score_history", name)
    op.drop_index("ix_lead_scores_received_at", table_name="lead_scores")
    op.drop_index("ix_lead_scores_account_domain", table_name="lead_scores")
    for name in ("cycle_started_at", "cycle", "account_domain", "received_at", "campaign", "source"):
        op.drop_column("lead_scores", name)
