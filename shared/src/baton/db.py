"""Async SQLAlchemy set-up for SQLite (aiosqlite) and PostgreSQL (asyncpg), and Alembic on start-up."""

from __future__ import annotations

import logging
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, DateTime, Dialect, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

logger = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: Baton stores timezone-aware UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base for Baton's tables: each service's models and the shared outbox/inbox."""


def create_engine(url: str, **options: Any) -> AsyncEngine:
    """Creates an async engine tuned for the backend the URL names.

    SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` transactions, so that concurrent
    writers queue instead of failing to upgrade a read lock.

    Args:
        url: A ``sqlite+aiosqlite://`` or ``postgresql+asyncpg://`` URL.
        **options: Passed to ``create_async_engine``.

    Returns:
        The engine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA busy_timeout = 30000")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    options.setdefault("pool_pre_ping", True)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 10)
    return create_async_engine(url, **options)


def is_postgresql(engine: AsyncEngine) -> bool:
    """Tells whether the engine talks to PostgreSQL.

    Args:
        engine: An engine from ``create_engine``.

    Returns:
        True for PostgreSQL.
    """
    return engine.dialect.name == "postgresql"


def create_sessionmaker(engine: AsyncEngine, **info: Any) -> async_sessionmaker[AsyncSession]:
    """Creates the session factory services use; ``info`` lands in every session's ``info``.

    Args:
        engine: The service's engine.
        **info: Values copied into each session's ``info`` dict (the outbox relay, for one).

    Returns:
        A session factory whose sessions keep objects usable after commit.
    """
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


async def ping(engine: AsyncEngine) -> bool:
    """Checks that the database answers.

    Args:
        engine: The engine.

    Returns:
        True when ``SELECT 1`` succeeds.
    """
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception:
        logger.warning("database unreachable", exc_info=True)
        return False
    return True


async def migrate(engine: AsyncEngine, script_location: str) -> None:
    """Brings the database to the newest Alembic revision of a service.

    On PostgreSQL an advisory lock keeps replicas that start together from migrating at once.

    Args:
        engine: The service's engine.
        script_location: The service's migrations, e.g. ``baton_handoff:migrations``.
    """
    config = Config()
    config.set_main_option("script_location", script_location)
    lock_key = zlib.crc32(script_location.encode())

    def upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.connect() as conn:
        if is_postgresql(engine):
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key})
        try:
            await conn.run_sync(upgrade)
            await conn.commit()
        finally:
            if is_postgresql(engine):
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key})
                await conn.commit()


def run_migrations_env() -> None:
    """The body of every service's Alembic ``env.py``: migrate on the connection ``migrate`` hands over."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Baton migrations run through baton.db.migrate(), which supplies the connection")
    context.configure(connection=connection, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
