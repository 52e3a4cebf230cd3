"""How database failures are classified, over real SQLite errors as SQLAlchemy raises them (PostgreSQL: integration)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.db import classify_database_error, create_engine
from baton.errors import BatonError

SCHEMA = (
    "CREATE TABLE teams (team_id VARCHAR(20) PRIMARY KEY)",
    "CREATE TABLE reps ("
    " rep_id VARCHAR(20) PRIMARY KEY,"
    " email VARCHAR(100) NOT NULL,"
    " team_id VARCHAR(20) REFERENCES teams (team_id),"
    " capacity INTEGER CONSTRAINT capacity_not_negative CHECK (capacity >= 0))",
    "CREATE UNIQUE INDEX reps_email ON reps (email)",
    "INSERT INTO teams VALUES ('emea')",
    "INSERT INTO reps VALUES ('rep-1', 'one@example.com', 'emea', 5)",
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/reps.db")
    async with engine.begin() as conn:
        for statement in SCHEMA:
            await conn.execute(text(statement))
    yield engine
    await engine.dispose()


async def failure_of(engine: AsyncEngine, statement: str) -> BaseException:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    return raised.value


def classified(exc: BaseException) -> BatonError:
    error = classify_database_error(exc)
    assert error is not None, f"{exc!r} was not classified"
    return error


@pytest.mark.parametrize(
    ("statement", "status", "detail"),
    [
        (
            "INSERT INTO reps VALUES ('rep-1', 'other@example.com', 'emea', 1)",
            409,
            "a row with the same rep_id already exists in reps",
        ),
        (
            "INSERT INTO reps VALUES ('rep-2', 'one@example.com', 'emea', 1)",
            409,
            "a row with the same email already exists in reps",
        ),
        ("INSERT INTO reps VALUES ('rep-2', NULL, 'emea', 1)", 422, "reps.email must not be null"),
        (
            "INSERT INTO reps VALUES ('rep-2', 'two@example.com', 'emea', -1)",
            422,
            "a value breaks a check (capacity_not_negative)",
        ),
        (
            "INSERT INTO reps VALUES ('rep-2', 'two@example.com', 'nowhere', 1)",
            422,
            "a value refers to nothing that exists, or the row is still referenced by another",
        ),
        (
            "DELETE FROM teams WHERE team_id = 'emea'",
            422,
            "a value refers to nothing that exists, or the row is still referenced by another",
        ),
    ],
    ids=["primary-key", "unique-index", "not-null", "check", "missing-reference", "still-referenced"],
)
async def test_sqlite_constraint_violations_are_the_callers_doing(
    engine: AsyncEngine, statement: str, status: int, detail: str
) -> None:
    error = classified(await failure_of(engine, statement))

    assert (error.status, error.detail) == (status, detail)


def test_locked_sqlite_database_is_unavailable(tmp_path: Path) -> None:
    # A plain sqlite3 engine with no busy timeout, so the lock error comes at once.
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/locked.db", connect_args={"timeout": 0})
    with engine.connect() as holder:
        holder.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        holder.commit()
        holder.exec_driver_sql("BEGIN IMMEDIATE")
        with pytest.raises(sqlalchemy.exc.OperationalError) as raised, engine.connect() as waiter:
            waiter.exec_driver_sql("BEGIN IMMEDIATE")
        holder.rollback()
    engine.dispose()

    assert "database is locked" in str(raised.value)
    error = classified(raised.value)
    assert (error.status, error.detail) == (503, "the database is busy; try again shortly")


async def test_refused_connection_is_unavailable() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    engine = create_engine(f"postgresql+asyncpg://baton:baton@127.0.0.1:{port}/nowhere")
    with pytest.raises(OSError) as raised:
        async with engine.connect():
            pass
    await engine.dispose()

    assert isinstance(raised.value, ConnectionRefusedError)
    assert classified(raised.value).status == 503


async def test_exhausted_connection_pool_is_unavailable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/pool.db", pool_size=1, max_overflow=0, pool_timeout=0.01)
    async with engine.connect():
        with pytest.raises(sqlalchemy.exc.TimeoutError) as raised:
            async with engine.connect():
                pass
    await engine.dispose()

    assert classified(raised.value).status == 503


async def test_a_bug_in_a_statement_is_left_unclassified(engine: AsyncEngine) -> None:
    failure = await failure_of(engine, "SELECT * FROM no_such_table")

    assert classify_database_error(failure) is None


def test_an_error_that_is_not_from_the_database_is_left_unclassified() -> None:
    assert classify_database_error(FileNotFoundError("settings.toml")) is None
    assert classify_database_error(ValueError("bad")) is None
