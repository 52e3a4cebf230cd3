"""On real PostgreSQL: what a failed statement answers, the race on a new rep, lost connections and TLS per URL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.auth import issue_token
from baton.db import create_engine
from baton_handoff.app import create_app
from baton_handoff.settings import HandoffSettings
from tests.conftest import POSTGRES_URL
from tests.unit.test_db import classified, failure_of

pytestmark = pytest.mark.integration

PROBLEM_JSON = "application/problem+json"
# Far longer than a blocked INSERT takes to show in pg_locks; only turns a broken race into a failure.
LOCK_WAIT_SECONDS = 10.0

SCHEMA = (
    "CREATE TABLE teams (team_id varchar(20) PRIMARY KEY)",
    "CREATE TABLE reps ("
    " rep_id varchar(8) PRIMARY KEY,"
    " email varchar(100) NOT NULL CONSTRAINT reps_email_key UNIQUE,"
    " team_id varchar(20) REFERENCES teams (team_id),"
    " capacity smallint CONSTRAINT capacity_not_negative CHECK (capacity >= 0))",
    "CREATE TABLE shifts ("
    " rep_id varchar(8) NOT NULL,"
    " during int4range NOT NULL,"
    " CONSTRAINT shifts_do_not_overlap EXCLUDE USING gist (during WITH &&))",
    "INSERT INTO teams VALUES ('emea')",
    "INSERT INTO reps VALUES ('rep-1', 'one@example.com', 'emea', 5)",
    "INSERT INTO shifts VALUES ('rep-1', '[1,10)')",
)


@pytest.fixture
async def engine(fresh_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(await fresh_database("errors"))
    async with engine.begin() as conn:
        for statement in SCHEMA:
            await conn.execute(text(statement))
    yield engine
    await engine.dispose()


@pytest.fixture
async def handoff(
    tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]
) -> AsyncIterator[tuple[httpx.AsyncClient, HandoffSettings, str]]:
    url = await fresh_database("handoff")
    settings = HandoffSettings(database_url=url, bus="embedded", data_dir=tmp_path)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://handoff") as client,
    ):
        yield client, settings, url.replace("postgresql+asyncpg://", "postgresql://")


def admin(settings: HandoffSettings) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings.signing_secret(), scopes=['admin'])}"}


@pytest.mark.parametrize(
    ("statement", "status", "detail"),
    [
        (
            "INSERT INTO reps VALUES ('rep-1', 'other@example.com', 'emea', 1)",
            409,
            "a row with the same rep_id already exists in reps (constraint reps_pkey)",
        ),
        (
            "INSERT INTO reps VALUES ('rep-2', 'one@example.com', 'emea', 1)",
            409,
            "a row with the same email already exists in reps (constraint reps_email_key)",
        ),
        (
            "INSERT INTO shifts VALUES ('rep-2', '[5,15)')",
            409,
            "the row conflicts with an existing one in shifts (constraint shifts_do_not_overlap)",
        ),
        ("INSERT INTO reps VALUES ('rep-2', NULL, 'emea', 1)", 422, "reps.email must not be null"),
        (
            "INSERT INTO reps VALUES ('rep-2', 'two@example.com', 'emea', -1)",
            422,
            "a value breaks a check in reps (constraint capacity_not_negative)",
        ),
        (
            "INSERT INTO reps VALUES ('rep-2', 'two@example.com', 'nowhere', 1)",
            422,
            "team_id in reps refers to nothing that exists (constraint reps_team_id_fkey)",
        ),
        (
            "DELETE FROM teams WHERE team_id = 'emea'",
            422,
            "the row is still referenced from reps (constraint reps_team_id_fkey)",
        ),
        (
            "INSERT INTO reps VALUES ('rep-with-a-long-id', 'two@example.com', 'emea', 1)",
            422,
            "a value cannot be stored: value too long for type character varying(8)",
        ),
        (
            "INSERT INTO reps VALUES ('rep-2', 'two@example.com', 'emea', 40000)",
            422,
            "a value cannot be stored: smallint out of range",
        ),
    ],
    ids=[
        "primary-key",
        "unique",
        "exclusion",
        "not-null",
        "check",
        "missing-reference",
        "still-referenced",
        "value-too-long",
        "numeric-out-of-range",
    ],
)
async def test_postgresql_constraint_and_data_violations_are_the_callers_doing(
    engine: AsyncEngine, statement: str, status: int, detail: str
) -> None:
    error = classified(await failure_of(engine, statement))

    assert (error.status, error.detail) == (status, detail)


async def test_argument_out_of_range_for_its_column_is_unprocessable(engine: AsyncEngine) -> None:
    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT * FROM reps WHERE capacity = :capacity"), {"capacity": 2**40})

    assert classified(raised.value).status == 422


async def test_serialization_failure_is_a_conflict(engine: AsyncEngine) -> None:
    async with engine.connect() as first, engine.connect() as second:
        await first.execution_options(isolation_level="REPEATABLE READ")
        await first.begin()
        await first.execute(text("SELECT capacity FROM reps WHERE rep_id = 'rep-1'"))
        async with second.begin():
            await second.execute(text("UPDATE reps SET capacity = 6 WHERE rep_id = 'rep-1'"))
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
            await first.execute(text("UPDATE reps SET capacity = 7 WHERE rep_id = 'rep-1'"))
        await first.rollback()

    error = classified(raised.value)
    assert (error.status, error.detail) == (409, "a concurrent request changed the same data; try again")


async def test_too_many_connections_is_unavailable(engine: AsyncEngine, unique_name: str) -> None:
    role = f"{unique_name}_limited"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'limited' CONNECTION LIMIT 0"))
    limited = create_engine(engine.url.set(username=role, password="limited").render_as_string(hide_password=False))
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
            async with limited.connect():
                pass
    finally:
        await limited.dispose()
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP ROLE {role}"))

    assert "too many connections" in str(raised.value)
    assert classified(raised.value).status == 503


async def test_terminated_connection_is_unavailable(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        backend = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await terminate([backend], engine)
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
            await conn.execute(text("SELECT 1"))

    assert raised.value.connection_invalidated
    assert classified(raised.value).status == 503


async def terminate(backends: list[int], engine: AsyncEngine) -> None:
    killer = await asyncpg.connect(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        for backend in backends:
            assert await killer.fetchval("SELECT pg_terminate_backend($1)", backend)
    finally:
        await killer.close()


# through a service


async def test_concurrent_posts_of_one_new_rep_answer_201_and_409(
    handoff: tuple[httpx.AsyncClient, HandoffSettings, str],
) -> None:
    client, settings, url = handoff
    rep = {"rep_id": "rep-race", "name": "Raced"}
    holder = await asyncpg.connect(url)
    try:
        # SHARE lets both requests look the rep up (and find nothing) but holds both INSERTs back,
        # so both pass the look-up before either writes: the loser can only meet the primary key.
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("LOCK TABLE reps IN SHARE MODE")
        with inserts_reached("INSERT INTO reps", count=2) as both_inserting:
            posts = asyncio.gather(*(client.post("/v1/reps", json=rep, headers=admin(settings)) for _ in range(2)))
            async with asyncio.timeout(LOCK_WAIT_SECONDS):
                await both_inserting.wait()
        await transaction.commit()
        answers = await posts
    finally:
        await holder.close()

    assert sorted(answer.status_code for answer in answers) == [201, 409]
    conflict = next(answer for answer in answers if answer.status_code == 409)
    assert conflict.headers["content-type"] == PROBLEM_JSON
    assert "rep" in conflict.json()["detail"]
    listed = await client.get("/v1/reps", headers=admin(settings))
    assert [r["rep_id"] for r in listed.json()["items"]] == ["rep-race"]


@contextmanager
def inserts_reached(prefix: str, *, count: int) -> Iterator[asyncio.Event]:
    """An event set once ``count`` statements starting with ``prefix`` are sent, by any engine in this process."""
    reached = asyncio.Event()
    sent = 0

    def before_cursor_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        nonlocal sent
        if statement.lstrip().startswith(prefix):
            sent += 1
            if sent >= count:
                reached.set()

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield reached
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", before_cursor_execute)


async def test_after_losing_every_pooled_connection_one_use_fails_cleanly_and_the_pool_recovers(
    engine: AsyncEngine,
) -> None:
    pooled = [await engine.connect() for _ in range(3)]
    backends = [(await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() for conn in pooled]
    for conn in pooled:
        await conn.close()
    await terminate(backends, engine)

    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    answers = []
    for _ in range(len(backends)):
        async with engine.connect() as conn:
            answers.append((await conn.execute(text("SELECT count(*) FROM reps"))).scalar_one())

    assert classified(raised.value).status == 503
    assert answers == [1, 1, 1]


@pytest.mark.parametrize(
    ("query", "encrypted"),
    [("", False), ("?ssl=require", True), ("?sslmode=require", True), ("?sslmode=disable", False)],
    ids=["plain-url", "ssl-require", "sslmode-require", "sslmode-disable"],
)
async def test_tls_is_used_only_when_the_url_asks_for_it(
    fresh_database: Callable[[str], Awaitable[str]], query: str, encrypted: bool
) -> None:
    engine = create_engine(await fresh_database("tls") + query)
    try:
        async with engine.connect() as conn:
            uses_tls = (await conn.execute(text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))).scalar()
    finally:
        await engine.dispose()

    assert uses_tls is encrypted


def test_postgresql_in_this_setup_offers_tls() -> None:
    # Without TLS on the server the test above would pass for the wrong reason.
    async def ssl_setting() -> str:
        conn = await asyncpg.connect(f"{POSTGRES_URL}/postgres", ssl=False)
        try:
            return str(await conn.fetchval("SHOW ssl"))
        finally:
            await conn.close()

    assert asyncio.run(ssl_setting()) == "on"
