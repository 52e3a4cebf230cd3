"""lead-ingest's migrations: 0002 makes keys per caller, and downgrading restores 0001's table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.db import create_engine, migrate

MIGRATIONS = "baton_lead_ingest:migrations"


async def run_alembic(engine: AsyncEngine, step: Callable[[Config, str], None], revision: str) -> None:
    """Runs an Alembic command (``command.downgrade``, ``command.upgrade``) on the engine's database."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        step(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def answers_table(engine: AsyncEngine) -> tuple[list[str], set[str]]:
    """The primary key and the columns of ``idempotent_answers``."""
    async with engine.connect() as conn:
        primary_key = await conn.run_sync(lambda sync: inspect(sync).get_pk_constraint("idempotent_answers"))
        columns = await conn.run_sync(lambda sync: inspect(sync).get_columns("idempotent_answers"))
    return list(primary_key["constrained_columns"]), {column["name"] for column in columns}


async def assert_idempotency_migration_round_trips(engine: AsyncEngine) -> None:
    await migrate(engine, MIGRATIONS)
    assert await answers_table(engine) == (
        ["caller", "key"],
        {"caller", "key", "request_hash", "status", "body", "created_at"},
    )

    await run_alembic(engine, command.downgrade, "0001")
    assert await answers_table(engine) == (["key"], {"key", "lead_id", "duplicate", "created_at"})

    await migrate(engine, MIGRATIONS)
    assert (await answers_table(engine))[0] == ["caller", "key"]


async def test_idempotency_migration_downgrades_to_global_keys_and_upgrades_again(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/ingest.db")
    try:
        await assert_idempotency_migration_round_trips(engine)
    finally:
        await engine.dispose()
