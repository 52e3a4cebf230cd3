"""A service's moving parts in one place: engine, migrations, bus, outbox relay and consumers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from baton.bus import ReplicaRefused, make_bus
from baton.consumer import EventConsumer, EventHandler, consumer_topics
from baton.db import create_engine, create_sessionmaker, migrate, ping
from baton.events import Clock, utcnow
from baton.outbox import MAX_EVENT_BYTES_KEY, RELAY_KEY, SOURCE_KEY, InboxEntry, OutboxRelay
from baton.settings import Settings
from baton.telemetry import ServiceTelemetry, show_readiness

logger = logging.getLogger(__name__)

CONSUMER_RESTART_PAUSE_SECONDS = 2.0


Pruner = Callable[[AsyncSession, datetime, Settings], Awaitable[int]]
"""Removes a service's own rows that are past their retention at ``now``; returns how many."""

Worker = Callable[["ServiceRuntime"], Awaitable[None]]
"""A service's own background loop (a scheduler, a delivery queue), run until the service stops.

It is restarted after a pause if it fails, like a consumer; it must be safe with several replicas."""


@dataclass(frozen=True)
class ServiceSpec:
    """What makes a service itself: its name, database, migrations, event handlers per consumer group,
    and what it prunes of its own besides the inbox."""

    name: str
    database: str
    migrations: str
    consumers: Mapping[str, Mapping[str, EventHandler]] = field(default_factory=dict)
    pruners: Sequence[Pruner] = ()
    workers: Sequence[Worker] = ()

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of events this service produces."""
        return f"/baton/{self.name}"


class ServiceRuntime:
    """Starts and stops one service's engine, bus, relay and consumers."""

    def __init__(self, spec: ServiceSpec, settings: Settings, *, clock: Clock = utcnow) -> None:
        self.spec = spec
        self.settings = settings
        self.clock = clock
        self.engine = create_engine(settings.database_url_for(spec.database))
        self.bus = make_bus(settings)
        self.relay = OutboxRelay(engine=self.engine, bus=self.bus, service=spec.name)
        self.sessions = create_sessionmaker(
            self.engine,
            **{RELAY_KEY: self.relay, SOURCE_KEY: spec.source, MAX_EVENT_BYTES_KEY: settings.max_event_bytes},
        )
        self.signing_secret = settings.signing_secret()
        self.telemetry = ServiceTelemetry(
            service=spec.name,
            bus=self.bus,
            groups={group: consumer_topics(handlers) for group, handlers in spec.consumers.items()},
            backlog=self.relay.backlog,
            readiness=self.check_readiness,
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Migrates the database, connects the bus and starts the relay and the consumers.

        Raises:
            ReplicaRefused: Another replica already runs on the embedded log.
        """
        await self.bus.start()
        try:
            await self.bus.claim(f"service-{self.spec.name}")
        except ReplicaRefused as refusal:
            logger.error("refusing to start: %s", refusal)
            await self.bus.stop()
            await self.engine.dispose()
            raise
        await migrate(self.engine, self.spec.migrations)
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.spec.name}-relay"))
        self._tasks.append(asyncio.create_task(self._prune_forever(), name=f"{self.spec.name}-pruner"))
        self._tasks.append(asyncio.create_task(self.telemetry.run(), name=f"{self.spec.name}-telemetry"))
        for group, handlers in self.spec.consumers.items():
            consumer = EventConsumer(
                group=group,
                handlers=handlers,
                bus=self.bus,
                sessions=self.sessions,
                max_attempts=self.settings.consumer_max_attempts,
                clock=self.clock,
            )
            self._tasks.append(asyncio.create_task(self._supervise(consumer), name=f"{group}-consumer"))
        for worker in self.spec.workers:
            name = getattr(worker, "__name__", "worker")
            self._tasks.append(asyncio.create_task(self._keep_running(worker), name=f"{self.spec.name}-{name}"))
        await asyncio.sleep(0)
        failure = next((t.exception() for t in self._tasks if t.done() and t.exception() is not None), None)
        if failure is not None:
            logger.error("refusing to start: %s", failure)
            await self.stop()
            raise failure
        logger.info("service started", extra={"bus": self.settings.bus, "service_name": self.spec.name})

    async def _supervise(self, consumer: EventConsumer) -> None:
        while True:
            try:
                await consumer.run()
            except ReplicaRefused:
                raise
            except Exception:
                logger.exception("consumer stopped; restarting", extra={"group": consumer.group})
            await asyncio.sleep(CONSUMER_RESTART_PAUSE_SECONDS)

    async def _keep_running(self, worker: Worker) -> None:
        while True:
            try:
                await worker(self)
            except Exception:
                logger.exception("worker stopped; restarting", extra={"worker": getattr(worker, "__name__", "worker")})
            await asyncio.sleep(CONSUMER_RESTART_PAUSE_SECONDS)

    async def prune(self) -> tuple[int, int]:
        """Forgets inbox ids, the service's own expired rows and embedded-log records past their retention.

        Returns:
            How many database rows and log records were removed.
        """
        now = self.clock()
        async with self.sessions() as session, session.begin():
            result = await session.execute(
                delete(InboxEntry).where(
                    InboxEntry.processed_at < now - timedelta(days=self.settings.inbox_retention_days)
                )
            )
            rows = int(getattr(result, "rowcount", 0) or 0)
            for pruner in self.spec.pruners:
                rows += await pruner(session, now, self.settings)
        log = await self.bus.prune(before=now - timedelta(days=self.settings.log_retention_days))
        return rows, log

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_interval_seconds)
            try:
                rows, log = await self.prune()
            except Exception:
                logger.warning("pruning failed; trying again later", exc_info=True)
                continue
            if rows or log:
                logger.info("pruned", extra={"database_rows": rows, "log_records": log})

    async def stop(self) -> None:
        """Stops consumers and relay, then the bus and the engine."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.telemetry.forget()
        await self.bus.stop()
        await self.engine.dispose()

    async def check_readiness(self) -> dict[str, bool]:
        """Checks the database and the bus.

        Returns:
            ``{"database": ok, "bus": ok}``.
        """
        database, bus = await asyncio.gather(ping(self.engine), self.bus.ping())
        checks = {"database": database, "bus": bus}
        show_readiness(self.spec.name, checks)
        return checks
