"""Async SQLAlchemy set-up for SQLite (aiosqlite) and PostgreSQL (asyncpg), and Alembic on start-up."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, DateTime, Dialect, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction
from sqlalchemy.types import TypeDecorator

from baton.errors import BatonError, Conflict, Unavailable, Unprocessable
from baton.failures import is_unreachable

logger = logging.getLogger(__name__)

# Below the idle timeouts of common proxies and firewalls, so that a pooled connection is replaced
# before something between us and PostgreSQL silently drops it.
POOL_RECYCLE_SECONDS = 1800
UNAVAILABLE_DETAIL = "the database is unavailable; try again shortly"


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
    writers queue instead of failing to upgrade a read lock. PostgreSQL gets a pool that recycles
    connections instead of pinging them at every checkout, and TLS only where the URL (``ssl=`` or
    ``sslmode=``) or ``PGSSLMODE`` asks for it.

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
    # No pre-ping: it costs three round trips on every checkout. A connection found dead while in use
    # fails that one request with 503 and SQLAlchemy then replaces every connection pooled before it.
    options.setdefault("pool_recycle", POOL_RECYCLE_SECONDS)
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 10)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "asyncpg":
        parsed, options["connect_args"] = _tls_only_when_asked(parsed, dict(options.get("connect_args", {})))
    return create_async_engine(parsed, **options)


def _tls_only_when_asked(url: URL, connect_args: dict[str, Any]) -> tuple[URL, dict[str, Any]]:
    # asyncpg's default, sslmode "prefer", opens every connection with a TLS attempt, and the handshake
    # and encryption cost more than the query on a local network. TLS stays whenever the URL, the
    # caller or libpq's PGSSLMODE asks for it; asyncpg takes libpq's "sslmode" as "ssl".
    if "sslmode" in url.query:
        connect_args.setdefault("ssl", url.query["sslmode"])
        url = url.difference_update_query(["sslmode"])
    if "ssl" not in url.query and "PGSSLMODE" not in os.environ:
        connect_args.setdefault("ssl", False)
    return url, connect_args


def is_postgresql(engine: AsyncEngine) -> bool:
    """Tells whether the engine talks to PostgreSQL.

    Args:
        engine: An engine from ``create_engine``.

    Returns:
        True for PostgreSQL.
    """
    return engine.dialect.name == "postgresql"


def dialect_insert(dialect: str) -> Any:
    """The ``insert`` of a dialect by name, the one with ``ON CONFLICT`` (PostgreSQL's, else SQLite's).

    Args:
        dialect: ``engine.dialect.name``.

    Returns:
        ``sqlalchemy.dialects.postgresql.insert`` or ``sqlalchemy.dialects.sqlite.insert``.
    """
    return postgresql_insert if dialect == "postgresql" else sqlite_insert


def insert_for(session: AsyncSession | Session) -> Any:
    """The ``insert`` with ``ON CONFLICT`` for the database a session is bound to.

    Args:
        session: An async or sync session.

    Returns:
        ``sqlalchemy.dialects.postgresql.insert`` or ``sqlalchemy.dialects.sqlite.insert``.
    """
    return dialect_insert(session.get_bind().dialect.name)


def create_sessionmaker(engine: AsyncEngine, **info: Any) -> async_sessionmaker[AsyncSession]:
    """Creates the session factory services use; ``info`` lands in every session's ``info``.

    Args:
        engine: The service's engine.
        **info: Values copied into each session's ``info`` dict (the outbox relay, for one).

    Returns:
        A session factory whose sessions keep objects usable after commit.
    """
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


_KEY_COLUMNS = re.compile(r"Key \((?P<columns>[^)]+)\)=")
_SQLITE_CONSTRAINT = re.compile(r"constraint failed: (?P<target>.+)$")


def classify_database_error(exc: BaseException) -> BatonError | None:
    """Tells how to answer a request that failed in the database, from what the driver says.

    A broken constraint is the caller's doing: 409 when the row clashes with another (unique, primary
    key, exclusion, a concurrent change), 422 when its data cannot be stored (NOT NULL, check, foreign
    key, a value too long or out of range). Only a database that cannot be reached or is busy is 503.

    Args:
        exc: An exception raised while talking to SQLite (aiosqlite) or PostgreSQL (asyncpg), as
            SQLAlchemy raised it.

    Returns:
        The domain error to answer with; None when the failure is not one of these (a bug: answer 500).
    """
    if is_unreachable(exc):
        locked = isinstance(getattr(exc, "orig", exc), sqlite3.OperationalError)
        return Unavailable("the database is busy; try again shortly" if locked else UNAVAILABLE_DETAIL)
    if isinstance(exc, sa_exc.DBAPIError):
        # asyncpg's error is one level further down, under SQLAlchemy's emulated DB-API one.
        driver: BaseException = getattr(exc.orig, "orig", None) or exc.orig or exc
    else:
        driver = exc
    if isinstance(driver, sqlite3.Error):
        return _classify_sqlite(driver)
    sqlstate = getattr(driver, "sqlstate", None)
    if isinstance(sqlstate, str):
        return _classify_postgresql(sqlstate, driver)
    return None


def _classify_postgresql(sqlstate: str, driver: BaseException) -> BatonError | None:
    table = getattr(driver, "table_name", None)
    column = getattr(driver, "column_name", None)
    constraint = getattr(driver, "constraint_name", None)
    driver_detail = getattr(driver, "detail", None) or ""
    key = _KEY_COLUMNS.search(driver_detail)
    columns = key["columns"] if key else None
    in_table = f" in {table}" if table else ""
    named = f" (constraint {constraint})" if constraint else ""
    match sqlstate:
        case "23505":
            return Conflict(f"a row with the same {columns or 'key'} already exists{in_table}{named}")
        case "23P01":
            return Conflict(f"the row conflicts with an existing one{in_table}{named}")
        case "23502":
            return Unprocessable(f"{'.'.join(filter(None, (table, column))) or 'a required value'} must not be null")
        case "23514":
            return Unprocessable(f"a value breaks a check{in_table}{named}")
        case "23503" if "still referenced" in driver_detail:
            # Here PostgreSQL names the referencing table, not the one the row is in.
            return Unprocessable(f"the row is still referenced from {table or 'another table'}{named}")
        case "23503":
            return Unprocessable(f"{columns or 'a value'}{in_table} refers to nothing that exists{named}")
        case "40001" | "40P01":
            return Conflict("a concurrent request changed the same data; try again")
    if sqlstate.startswith("22"):
        return Unprocessable(f"a value cannot be stored: {str(driver).splitlines()[0] if str(driver) else sqlstate}")
    return None


def _classify_sqlite(driver: sqlite3.Error) -> BatonError | None:
    # SQLite names the failed constraint only in its message: "UNIQUE constraint failed: reps.rep_id".
    name = getattr(driver, "sqlite_errorname", "")
    found = _SQLITE_CONSTRAINT.search(str(driver))
    target = found["target"] if found else ""
    if name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        table, dot, _ = target.partition(".")
        if not dot:
            return Conflict(f"a row with the same key already exists ({target or 'unique constraint'})")
        columns = ", ".join(column.rpartition(".")[2] for column in target.split(", "))
        return Conflict(f"a row with the same {columns} already exists in {table}")
    if name == "SQLITE_CONSTRAINT_NOTNULL":
        return Unprocessable(f"{target or 'a required value'} must not be null")
    if name == "SQLITE_CONSTRAINT_CHECK":
        return Unprocessable(f"a value breaks a check ({target})" if target else "a value breaks a check")
    if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return Unprocessable("a value refers to nothing that exists, or the row is still referenced by another")
    return None


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
        command.upgrade(config, "heads")

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


_AFTER_COMMIT = "baton.after_commit"


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Runs ``fn`` once the session's current transaction commits; never if it rolls back.

    Args:
        session: The session whose transaction must commit first.
        fn: What to run then, e.g. counting a Prometheus metric for what the database kept, so that a batch
            that rolls back and is tried again counts once. A failure of ``fn`` is logged, never raised.
    """
    sync_session = session.sync_session
    pending: list[Callable[[], None]] | None = sync_session.info.get(_AFTER_COMMIT)
    if pending is None:
        pending = sync_session.info[_AFTER_COMMIT] = []
        event.listen(sync_session, "after_commit", _run_after_commit)
        event.listen(sync_session, "after_transaction_end", _forget_after_commit)
    pending.append(fn)


def _run_after_commit(sync_session: Session) -> None:
    pending: list[Callable[[], None]] = sync_session.info[_AFTER_COMMIT]
    ready, pending[:] = list(pending), []
    for fn in ready:
        try:
            fn()
        except Exception:
            logger.exception("an after-commit callback failed", extra={"callback": getattr(fn, "__name__", repr(fn))})


def _forget_after_commit(sync_session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ending with callbacks still pending means it rolled back:
    # after_commit has already taken them otherwise.
    if transaction.parent is None:
        sync_session.info[_AFTER_COMMIT].clear()
