"""scoring: accounts' engagement kept as a running sum, so that scoring a lead reads one row for its account
rather than every person of it.

Each lead keeps its engagement before rounding (``engagement_exact``, what it adds to its account); leads
scored before this revision start from their rounded engagement until they are scored again. Each account's
sum is built here from its people under the half-life of the model in force.

Revision ID: 0004
"""

import math
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

SECONDS_PER_DAY = 86_400.0


def upgrade() -> None:
    op.add_column("lead_scores", sa.Column("engagement_exact", sa.Float, nullable=False, server_default=sa.text("0")))
    op.create_table(
        "scoring_accounts",
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column("half_life_days", sa.Float, nullable=False),
        sa.Column("reference_at", sa.DateTime(timezone=True)),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    lead_scores = sa.table(
        "lead_scores",
        sa.column("account_domain", sa.String),
        sa.column("engagement", sa.Integer),
        sa.column("engagement_exact", sa.Float),
        sa.column("scored_at", sa.DateTime(timezone=True)),
    )
    connection.execute(lead_scores.update().values(engagement_exact=sa.func.coalesce(lead_scores.c.engagement, 0)))
    versions = sa.table("model_versions", sa.column("version", sa.Integer), sa.column("definition", sa.JSON))
    definition = connection.scalar(sa.select(versions.c.definition).order_by(versions.c.version.desc()).limit(1))
    half_life = float(definition["half_life_days"]) if isinstance(definition, dict) else 30.0
    people: dict[str, list[tuple[float, datetime]]] = defaultdict(list)
    rows = connection.execute(
        sa.select(lead_scores.c.account_domain, lead_scores.c.engagement_exact, lead_scores.c.scored_at).where(
            lead_scores.c.account_domain.is_not(None), lead_scores.c.scored_at.is_not(None)
        )
    )
    for domain, engagement, scored_at in rows:
        people[domain].append((float(engagement), scored_at))
    accounts = sa.table(
        "scoring_accounts",
        sa.column("domain", sa.String),
        sa.column("half_life_days", sa.Float),
        sa.column("reference_at", sa.DateTime(timezone=True)),
        sa.column("weight", sa.Float),
        sa.column("as_of", sa.DateTime(timezone=True)),
    )
    built = []
    for domain, contributions in people.items():
        # The sum's reference is the account's latest contribution, so every factor is at most 1. Times are
        # written back as they were read (naive UTC on SQLite), so they are stored as the service stores them.
        latest = max(at for _, at in contributions)
        weight = math.fsum(
            points * math.pow(0.5, (latest - at).total_seconds() / SECONDS_PER_DAY / half_life)
            for points, at in contributions
        )
        built.append(
            {"domain": domain, "half_life_days": half_life, "reference_at": latest, "weight": weight, "as_of": latest}
        )
    if built:
        connection.execute(accounts.insert(), built)


def downgrade() -> None:
    op.drop_table("scoring_accounts")
    op.drop_column("lead_scores", "engagement_exact")
