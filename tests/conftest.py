"""Fixtures shared by every test layer: where the real Kafka and PostgreSQL are, and clean databases."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
from hypothesis import settings

POSTGRES_URL = os.environ.get("BATON_TEST_POSTGRES_URL", "postgresql://baton:baton@127.0.0.1:55432")
KAFKA_BOOTSTRAP = os.environ.get("BATON_TEST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")

SERVICE_DATABASES = ("baton_lead_ingest", "baton_scoring", "baton_handoff", "baton_metrics")

# In CI every property test draws the same examples, so a run's verdict is the code's, not the dice's; locally
# they keep exploring, and what they find is kept in the example database for the next run.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


async def recreate_database(name: str) -> str:
    """Drops and creates a PostgreSQL database; returns its asyncpg SQLAlchemy URL."""
    conn = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"{POSTGRES_URL.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """create_app() routes the root logger through its JSON handler; put pytest's set-up back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def unique_name() -> str:
    """A short random name for topics, groups and databases that no other test run uses."""
    return "t" + secrets.token_hex(4)


@pytest.fixture
async def fresh_database(unique_name: str) -> AsyncIterator[Callable[[str], Awaitable[str]]]:
    """Makes empty PostgreSQL databases on demand and drops them afterwards."""
    created: list[str] = []

    async def make(suffix: str) -> str:
        name = f"{unique_name}_{suffix}"
        created.append(name)
        return await recreate_database(name)

    yield make
    conn = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
    try:
        for name in created:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


class LogSignal(logging.Handler):
    """Sets ``seen`` as soon as a logger writes a record whose message contains ``text`` (from any thread).

    Use it as a context manager inside a running event loop, to wait on something a component logs
    (a retry, a refusal) instead of guessing how long it takes.
    """

    def __init__(self, logger: str, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()
        self._logger = logging.getLogger(logger)
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self._loop.call_soon_threadsafe(self.seen.set)

    def __enter__(self) -> LogSignal:
        self._logger.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        self._logger.removeHandler(self)
