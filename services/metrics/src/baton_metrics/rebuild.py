"""Rebuilding the read model from the event log (``baton metrics rebuild``), while metrics runs.

Every topic metrics consumes is read from the start of the log into a fresh read model, through
metrics' own consumer: the same handlers, the same batches and the same inbox, so an event the log
holds twice counts once, exactly as it did live. The fresh read model lives beside the live one: a
SQLite file next to it, or a schema in the same PostgreSQL database.

Then the live consumer is held off: on SQLite by the write lock (``BEGIN IMMEDIATE``) that every
batch needs too, on PostgreSQL by ``LOCK TABLE inbox IN EXCLUSIVE MODE``, which conflicts with the
row lock every batch takes first, when it claims its events in the inbox. A batch that already
holds it is waited for; one that comes later waits at its first statement, holding nothing, so the
two cannot deadlock. While the lock is held the log is read again and what arrived since the first
read is applied too; then, in the same transaction, every read-model table and the group's inbox
rows are replaced with the fresh ones. When the lock is released the live consumer goes on: the
events the rebuild already counted are in the inbox it now has, so it skips them.

Targets and campaign costs are set by admins, not derived from events: they stay as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from baton.bus import Bus, Record, make_bus
from baton.consumer import EventConsumer
from baton.db import create_engine, create_sessionmaker, is_postgresql, migrate
from baton.events import EVENT_MODELS, TOPICS
from baton.outbox import InboxEntry
from baton_metrics.app import SPEC
from baton_metrics.models import AssignmentClock, DurationBucket, JourneyStep, KpiCounter, LeadProgress
from baton_metrics.settings import MetricsSettings

GROUP = "metrics"
READ_MODEL: tuple[Table, ...] = tuple(
    cast(Table, model.__table__) for model in (KpiCounter, DurationBucket, AssignmentClock, LeadProgress, JourneyStep)
)
"""The tables the events make; replaced whole by a rebuild (with the group's inbox rows)."""
REBUILD_SCHEMA = "baton_metrics_rebuild"
"""PostgreSQL: the schema, in the live database, that the fresh read model is built in."""
_ATTACHED = "baton_rebuild"
_LOCK_KEY = zlib.crc32(b"baton_metrics.rebuild")


class RebuildRefused(RuntimeError):
    """A rebuild cannot run: another one of the same read model is running, or metrics' database is in memory."""


@dataclass
class RebuildReport:
    """What a rebuild read and applied."""

    records: dict[str, int] = field(default_factory=dict)
    """Records read per topic (an event the log holds twice is read twice and counted once)."""
    caught_up: int = 0
    """Records that reached the log while the first read was applied, applied under the lock."""
    events: int = 0
    """Distinct events the fresh read model holds (its inbox rows)."""
    not_applied: int = 0
    """Records that failed every attempt (undecodable, or their handler failed); live parked them in the DLQ too."""
    seconds: float = 0.0
    """From the first read to the swap's commit."""


def consumed_topics() -> list[str]:
    """The topics metrics consumes, in the pipeline's order (a lead is received, then scored, then handed off)."""
    topics = {EVENT_MODELS[event_type].topic for event_type in SPEC.consumers[GROUP]}
    return [topic for topic in TOPICS if topic in topics]


class _DeadLettersKept:
    """The bus the rebuild's consumer parks failures on: they are counted, never parked again (live parked them)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def publish(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


class _Replay:
    """Hands the log's records to metrics' consumer, each record once however often the log is read."""

    def __init__(self, consumer: EventConsumer, *, batch_size: int) -> None:
        self.consumer = consumer
        self.batch_size = batch_size
        self.read_up_to: dict[tuple[str, int], int] = {}
        self.report = RebuildReport()

    async def pass_over(self, bus: Bus, topics: Sequence[str]) -> int:
        """Reads each topic from its start and applies the records not applied yet; returns how many."""
        applied = 0
        for topic in topics:
            records = [
                record
                for record in await bus.read(topic)
                if record.offset > self.read_up_to.get((topic, record.partition), -1)
            ]
            # A lead's records share a partition and stay in its order; batches keep that order.
            for start in range(0, len(records), self.batch_size):
                await self.consumer.on_batch(records[start : start + self.batch_size])
            for record in records:
                key = (topic, record.partition)
                self.read_up_to[key] = max(self.read_up_to.get(key, -1), record.offset)
            self.report.records[topic] = self.report.records.get(topic, 0) + len(records)
            applied += len(records)
        return applied


@dataclass(frozen=True)
class _Place:
    """Where the fresh read model is built, and how the live database's connection names both."""

    fresh_url: str
    fresh_options: dict[str, Any]
    live: str
    fresh: str
    sqlite_file: Path | None = None


def _engine(url: str, **options: Any) -> AsyncEngine:
    if make_url(url).get_backend_name() == "sqlite":
        # One connection per use: the fresh file attached for the swap goes away with it.
        options["poolclass"] = NullPool
    return create_engine(url, **options)


def _sqlite_file(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise RebuildRefused("metrics' SQLite database is in memory: there is nothing to rebuild beside it")
    return Path(database)


def _fresh_sqlite_file(live: Path) -> Path:
    return live.with_name(f"{live.stem}.rebuild{live.suffix or '.db'}")


def _remove_sqlite_file(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


async def _prepare(live: AsyncEngine, live_url: str) -> _Place:
    """Makes an empty place for the fresh read model (dropping a failed rebuild's leftovers)."""
    if is_postgresql(live):
        async with live.connect() as conn:
            schema = str((await conn.execute(text("SELECT current_schema()"))).scalar_one())
            await conn.execute(text(f"DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"))
            await conn.execute(text(f"CREATE SCHEMA {REBUILD_SCHEMA}"))
            await conn.commit()
        quote = live.dialect.identifier_preparer.quote_schema
        return _Place(
            fresh_url=live_url,
            fresh_options={"connect_args": {"server_settings": {"search_path": REBUILD_SCHEMA}}},
            live=quote(schema),
            fresh=REBUILD_SCHEMA,
        )
    fresh_file = _fresh_sqlite_file(_sqlite_file(live_url))
    _remove_sqlite_file(fresh_file)
    fresh_url = make_url(live_url).set(database=str(fresh_file)).render_as_string(hide_password=False)
    return _Place(fresh_url=fresh_url, fresh_options={}, live="main", fresh=_ATTACHED, sqlite_file=fresh_file)


async def _discard(live: AsyncEngine, place: _Place) -> None:
    if place.sqlite_file is not None:
        _remove_sqlite_file(place.sqlite_file)
        return
    async with live.connect() as conn:
        await conn.execute(text(f"DROP SCHEMA IF EXISTS {REBUILD_SCHEMA} CASCADE"))
        await conn.commit()


@contextlib.asynccontextmanager
async def _only_rebuild(live: AsyncEngine, live_url: str) -> AsyncIterator[None]:
    """Holds the right to rebuild this read model: a second rebuild would drop the first one's fresh tables."""
    if is_postgresql(live):
        async with live.connect() as conn:
            claimed = (await conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _LOCK_KEY})).scalar()
            await conn.commit()
            if not claimed:
                raise RebuildRefused("another rebuild of metrics' read model is running")
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                await conn.commit()
        return
    lock_path = _fresh_sqlite_file(_sqlite_file(live_url)).with_suffix(".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildRefused("another rebuild of metrics' read model is running") from None
        yield
    finally:
        os.close(fd)


async def _hold_off_live_consumer(conn: AsyncConnection, place: _Place) -> None:
    # SQLite: the transaction began with BEGIN IMMEDIATE (see baton.db), the write lock every batch needs.
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"LOCK TABLE {place.live}.{InboxEntry.__tablename__} IN EXCLUSIVE MODE"))


async def _swap(conn: AsyncConnection, place: _Place) -> None:
    """Replaces the live read model and the group's inbox rows with the fresh ones, in the caller's transaction."""
    if place.sqlite_file is not None:
        await conn.exec_driver_sql(f"ATTACH DATABASE ? AS {_ATTACHED}", (str(place.sqlite_file),))
    quote = conn.dialect.identifier_preparer.quote
    for table in READ_MODEL:
        # Surrogate ids are left to the live table's own sequence; ORDER BY keeps the fresh rows' order.
        columns = ", ".join(quote(column.name) for column in table.columns if column.autoincrement is not True)
        order = ", ".join(quote(column.name) for column in table.primary_key.columns)
        name = quote(table.name)
        await conn.execute(text(f"DELETE FROM {place.live}.{name}"))
        select_fresh = f"SELECT {columns} FROM {place.fresh}.{name} ORDER BY {order}"
        await conn.execute(text(f"INSERT INTO {place.live}.{name} ({columns}) {select_fresh}"))
    inbox = InboxEntry.__tablename__
    group = {"group": GROUP}
    await conn.execute(text(f"DELETE FROM {place.live}.{inbox} WHERE consumer_group = :group"), group)
    await conn.execute(
        text(
            f"INSERT INTO {place.live}.{inbox} (consumer_group, event_id, processed_at) "
            f"SELECT consumer_group, event_id, processed_at FROM {place.fresh}.{inbox} WHERE consumer_group = :group"
        ),
        group,
    )


async def _distinct_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(InboxEntry).where(InboxEntry.consumer_group == GROUP)
        return int((await conn.execute(query)).scalar_one())


async def rebuild_read_model(settings: MetricsSettings, *, bus: Bus | None = None) -> RebuildReport:
    """Replays every topic metrics consumes into a fresh read model and swaps it in for the live one.

    Args:
        settings: metrics' settings (the same ``BATON_*`` variables the service reads).
        bus: The log to read, already started; by default the one the settings name, started and stopped here.

    Returns:
        What was read and applied, and how long it took.

    Raises:
        RebuildRefused: Another rebuild of this read model is running.
    """
    live_url = settings.database_url_for(SPEC.database)
    live = _engine(live_url)
    own_bus = bus is None
    log = bus if bus is not None else make_bus(settings)
    try:
        if own_bus:
            await log.start()
        async with _only_rebuild(live, live_url):
            return await _rebuild(settings, live, live_url, log)
    finally:
        if own_bus:
            await log.stop()
        await live.dispose()


async def _rebuild(settings: MetricsSettings, live: AsyncEngine, live_url: str, log: Bus) -> RebuildReport:
    # As metrics does when it starts: the live tables must have the columns the fresh ones are copied from.
    await migrate(live, SPEC.migrations)
    place = await _prepare(live, live_url)
    fresh = _engine(place.fresh_url, **place.fresh_options)
    try:
        await migrate(fresh, SPEC.migrations)
        dead_letters = _DeadLettersKept()
        consumer = EventConsumer(
            group=GROUP,
            handlers=SPEC.consumers[GROUP],
            # Only a failing event's dead letter is ever published by the consumer.
            bus=cast(Bus, dead_letters),
            sessions=create_sessionmaker(fresh),
            max_attempts=settings.consumer_max_attempts,
        )
        replay = _Replay(consumer, batch_size=settings.consumer_batch_size)
        topics = consumed_topics()
        started = time.perf_counter()
        await replay.pass_over(log, topics)
        async with live.connect() as conn, conn.begin():
            await _hold_off_live_consumer(conn, place)
            replay.report.caught_up = await replay.pass_over(log, topics)
            await _swap(conn, place)
        replay.report.seconds = time.perf_counter() - started
        replay.report.events = await _distinct_events(fresh)
        replay.report.not_applied = len(dead_letters.records)
        return replay.report
    finally:
        await fresh.dispose()
        await _discard(live, place)
