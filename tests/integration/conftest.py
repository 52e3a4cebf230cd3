"""Integration fixtures: a Kafka bus on its own topic prefix, and a PostgreSQL database with the messaging tables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.db import Base, create_engine
from baton.outbox import InboxEntry, OutboxEntry

pytestmark = pytest.mark.integration


async def create_messaging_schema(engine: AsyncEngine) -> None:
    """Creates the outbox and inbox and a table handlers write to."""
    async with engine.begin() as conn:
        await conn.run_sync(
            Base.metadata.create_all,
            tables=[Base.metadata.tables[m.__tablename__] for m in (OutboxEntry, InboxEntry)],
        )
        seq = "BIGSERIAL PRIMARY KEY" if conn.dialect.name == "postgresql" else "INTEGER PRIMARY KEY AUTOINCREMENT"
        await conn.execute(text(f"CREATE TABLE applied (seq {seq}, lead_id VARCHAR(200) NOT NULL)"))


@pytest.fixture
async def pg_engine(fresh_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[AsyncEngine]:
    """An engine on a new PostgreSQL database holding the outbox, the inbox and ``applied``."""
    engine = create_engine(await fresh_database("messaging"))
    await create_messaging_schema(engine)
    yield engine
    await engine.dispose()
