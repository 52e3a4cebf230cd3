"""Each service's migrations build exactly the schema its models describe, take it all down again, and
depend on nothing that can change after they are written (models, domain, the live outbox tables)."""

from __future__ import annotations

import ast
import importlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, Connection, Integer, MetaData, Table, column, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.db import Base, create_engine, migrate
from baton.outbox import InboxEntry, OutboxEntry

ROOT = Path(__file__).resolve().parents[2]
SERVICE_PACKAGES = ("baton_lead_ingest", "baton_scoring", "baton_handoff", "baton_metrics")
MIGRATION_FILES = sorted(
    path for path in ROOT.glob("services/*/src/*/migrations/versions/*.py") if path.name != "__init__.py"
)
# What a migration may build on: the standard library, SQLAlchemy, Alembic and the frozen shared steps.
ALLOWED_BATON_MODULES = {"baton.migration_ops"}


def _imported_modules(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # A relative import reaches into the service's own package.
            modules.append("." * node.level + (node.module or ""))
    return modules


def _changeable(module: str) -> bool:
    top = module.split(".")[0]
    if module.startswith(".") or top in SERVICE_PACKAGES:
        return True
    return top == "baton" and module not in ALLOWED_BATON_MODULES


@pytest.mark.parametrize("path", MIGRATION_FILES, ids=lambda path: str(path.relative_to(ROOT / "services")))
def test_migration_imports_nothing_that_changes_after_it_is_written(path: Path) -> None:
    assert [module for module in _imported_modules(path) if _changeable(module)] == []


def test_every_service_has_migrations_to_check() -> None:
    packages = {path.parents[2].name for path in MIGRATION_FILES}
    assert packages == set(SERVICE_PACKAGES)


def service_metadata(package: str) -> MetaData:
    """The tables a service's models describe: its own and the shared outbox and inbox."""
    importlib.import_module(f"{package}.app")  # registers every model the service uses on the shared Base
    tables = [Base.metadata.tables[model.__tablename__] for model in (OutboxEntry, InboxEntry)]
    for mapper in Base.registry.mappers:
        if mapper.class_.__module__.startswith(f"{package}.") and isinstance(mapper.local_table, Table):
            tables.append(mapper.local_table)
    metadata = MetaData()
    for model_table in tables:
        model_table.to_metadata(metadata)
    return metadata


def _alembic_config(package: str, connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", f"{package}:migrations")
    config.attributes["connection"] = connection
    return config


async def downgrade_to_base(engine: AsyncEngine, package: str) -> None:
    """Runs every downgrade of a service's migrations."""
    async with engine.connect() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_alembic_config(package, sync), "base"))
        await conn.commit()


async def schema_differences(engine: AsyncEngine, package: str) -> list[Any]:
    """What Alembic's autogenerate would change to make the database match the service's models."""
    metadata = service_metadata(package)

    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


async def table_names(engine: AsyncEngine) -> list[str]:
    """The tables in the database, sorted."""
    async with engine.connect() as conn:
        return sorted(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def seeded_scoring_models(engine: AsyncEngine) -> list[tuple[int, dict[str, Any]]]:
    """The scoring model versions in the database, as stored."""
    versions = table("model_versions", column("version", Integer), column("definition", JSON))
    async with engine.connect() as conn:
        rows = await conn.execute(select(versions.c.version, versions.c.definition))
        return [(int(row[0]), row[1]) for row in rows]


async def check_migrations_round_trip(engine: AsyncEngine, package: str) -> None:
    """Upgrade matches the models; downgrade leaves only alembic_version; upgrade works again."""
    await migrate(engine, f"{package}:migrations")
    assert await schema_differences(engine, package) == []

    await downgrade_to_base(engine, package)
    assert await table_names(engine) == ["alembic_version"]

    await migrate(engine, f"{package}:migrations")
    assert await schema_differences(engine, package) == []


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'service.db'}")
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
async def test_migrations_build_the_models_schema_and_take_it_all_down_on_sqlite(
    sqlite_engine: AsyncEngine, package: str
) -> None:
    await check_migrations_round_trip(sqlite_engine, package)


async def test_every_seeded_scoring_model_is_readable_by_todays_scoring_model(sqlite_engine: AsyncEngine) -> None:
    from baton_scoring.model import DEFAULT_MODEL_V2, stored_model

    await migrate(sqlite_engine, "baton_scoring:migrations")

    seeded = dict(await seeded_scoring_models(sqlite_engine))
    assert sorted(seeded) == [1, 2]
    assert stored_model(seeded[1]) == DEFAULT_MODEL_V2
    assert stored_model(seeded[2]) == DEFAULT_MODEL_V2
