"""Migrations 0003 and 0004 keep the leads scored before them: their facts fill the new columns, their history
stays, and their accounts are summed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.db import create_engine

SCORED_AT = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'scoring.db'}")
    yield engine
    await engine.dispose()


async def upgrade(engine: AsyncEngine, revision: str) -> None:
    def run(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", "baton_scoring:migrations")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.connect() as conn:
        await conn.run_sync(run)
        await conn.commit()


async def test_leads_scored_before_0003_get_source_campaign_account_and_a_first_cycle(engine: AsyncEngine) -> None:
    await upgrade(engine, "0002")
    async with engine.begin() as conn:
        for lead_id, email in (("lead-1", "ada@engines.example"), ("lead-2", "bob@gmail.com")):
            await conn.execute(
                text(
                    "INSERT INTO lead_scores (lead_id, attributes, activities, score, fit_grade, engagement, "
                    "breakdown, model_version, status, scored_at) VALUES (:id, :attributes, '[]', 45, 'A', 0, "
                    "'[]', 1, 'mql', :at)"
                ),
                {
                    "id": lead_id,
                    "attributes": f'{{"email": "{email}", "source": "webinar", "campaign": "spring"}}',
                    "at": SCORED_AT.isoformat(),
                },
            )
            await conn.execute(
                text(
                    "INSERT INTO score_history (lead_id, score, fit_grade, model_version, scored_at) "
                    "VALUES (:id, 45, 'A', 1, :at)"
                ),
                {"id": lead_id, "at": SCORED_AT.isoformat()},
            )

    await upgrade(engine, "head")

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT lead_id, source, campaign, account_domain, cycle, status, received_at IS NOT NULL "
                    "FROM lead_scores ORDER BY lead_id"
                )
            )
        ).all()
        history = await conn.scalar(text("SELECT count(*) FROM score_history"))
    assert [tuple(row) for row in rows] == [
        ("lead-1", "webinar", "spring", "engines.example", 1, "mql", 1),
        ("lead-2", "webinar", "spring", None, 1, "mql", 1),
    ]
    assert history == 2


async def test_accounts_are_summed_from_the_leads_scored_before_0004(engine: AsyncEngine) -> None:
    await upgrade(engine, "0003")
    people = [("lead-1", "engines.example", 12, 0), ("lead-2", "engines.example", 8, 30), ("lead-3", None, 20, 0)]
    async with engine.begin() as conn:
        for lead_id, domain, engagement, days_earlier in people:
            await conn.execute(
                text(
                    "INSERT INTO lead_scores (lead_id, attributes, activities, score, fit_grade, engagement, "
                    "breakdown, model_version, status, scored_at, account_domain, cycle) VALUES (:id, '{}', '[]', "
                    ":engagement, 'C', :engagement, '[]', 2, 'nurture', :at, :domain, 1)"
                ),
                {
                    "id": lead_id,
                    "engagement": engagement,
                    "domain": domain,
                    "at": (SCORED_AT - timedelta(days=days_earlier)).isoformat(),
                },
            )

    await upgrade(engine, "head")

    async with engine.connect() as conn:
        exact = (await conn.execute(text("SELECT lead_id, engagement_exact FROM lead_scores ORDER BY lead_id"))).all()
        accounts = (await conn.execute(text("SELECT domain, half_life_days, weight FROM scoring_accounts"))).all()
    assert [tuple(row) for row in exact] == [("lead-1", 12.0), ("lead-2", 8.0), ("lead-3", 20.0)]
    # Summed as of the latest of them under version 2's half-life of 30 days: 12 + 8 halved once.
    assert [tuple(row) for row in accounts] == [("engines.example", 30.0, 16.0)]
