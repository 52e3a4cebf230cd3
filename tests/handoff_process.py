"""Runs Baton services (handoff's replicas, metrics) as separate processes, started as they are deployed, on the
real Kafka and PostgreSQL.

Each process's log is kept in a file and watched line by line, so that a test can wait on what the
processes do (start-up, joining the consumer group) instead of guessing how long it takes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from baton.auth import issue_token
from baton.bus.kafka import KafkaBus
from baton.cli import SERVICES
from baton.db import create_engine
from baton.events import CloudEvent, from_binary
from tests.conftest import KAFKA_BOOTSTRAP

READY_TIMEOUT_SECONDS = 60
STOP_GRACE_SECONDS = 30
# Joining waits out the broker's initial rebalance delay and a heartbeat of every member already in.
GROUP_JOIN_TIMEOUT_SECONDS = 30
# How long one wait on a topic lasts when nothing arrives: it paces a loop that polls the database.
TOPIC_WAIT_MS = 500


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def factory_of(service: str) -> str:
    """The app factory uvicorn runs for a service (``baton_handoff.app:create_app`` for ``handoff``)."""
    return next(spec.factory for spec in SERVICES if spec.name == service)


def service_environment(
    *, database_url: str, topic_prefix: str, secret: str, data_dir: Path, **settings: str
) -> dict[str, str]:
    """The environment of a production replica of a service: Kafka, PostgreSQL and a shared signing secret.

    ``settings`` adds ``BATON_<NAME>`` variables (e.g. ``consumer_batch_size="10"``).
    """
    return {
        **os.environ,
        "BATON_ENV": "production",
        "BATON_BUS": "kafka",
        "BATON_KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
        "BATON_KAFKA_TOPIC_PREFIX": topic_prefix,
        "BATON_KAFKA_REPLICATION_FACTOR": "1",  # the local development broker is a single node
        "BATON_DATABASE_URL": database_url,
        "BATON_JWT_SECRET": secret,
        "BATON_DATA_DIR": str(data_dir),
        **{f"BATON_{name.upper()}": value for name, value in settings.items()},
    }


@dataclass
class ServiceProcess:
    """One replica of a service: ``python -m uvicorn --factory <its app factory>`` on its own port."""

    name: str
    factory: str
    port: int
    env: Mapping[str, str]
    log_path: Path
    news: asyncio.Event
    """Set whenever any replica sharing it logs a line or exits."""
    lines: list[str] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    _reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self) -> None:
        """Starts the process; its output goes to the log file and to ``lines``."""
        assert not self.running, f"{self.name} is already running"
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            self.factory,
            "--port",
            str(self.port),
            "--no-access-log",
            env=dict(self.env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read_log(self.process), name=f"{self.name}-log")

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"--- {self.name} started (pid {process.pid})\n")
            while line := await process.stdout.readline():
                text = line.decode(errors="replace")
                log.write(text)
                log.flush()
                self.lines.append(text)
                self.news.set()
            await process.wait()
            log.write(f"--- {self.name} exited with code {process.returncode}\n")
        self.news.set()

    async def kill(self) -> int:
        """Kills the process with SIGKILL, as a crashed machine would; returns its exit code."""
        assert self.process is not None
        self.process.kill()
        return await self._reaped()

    async def stop(self) -> int | None:
        """Asks the process to stop (SIGTERM) and kills it if it has not within the grace period."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_GRACE_SECONDS):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
        return await self._reaped()

    async def _reaped(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None
        return code

    def check_alive(self, what: str) -> None:
        """Fails if the process was started and has exited since."""
        if self.process is not None and self.process.returncode is not None:
            raise AssertionError(
                f"{self.name} exited with code {self.process.returncode} while waiting for {what}:\n{self.log_tail()}"
            )

    def log_tail(self, characters: int = 4000) -> str:
        return "".join(self.lines)[-characters:]


@asynccontextmanager
async def within(seconds: float, *, what: str, replicas: Sequence[ServiceProcess]) -> AsyncIterator[None]:
    """Bounds a wait; running out of time fails the test with what was awaited and the replicas' last logs."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        tails = "\n".join(f"--- {r.name}:\n{r.log_tail()}" for r in replicas)
        raise AssertionError(f"no {what} within {seconds} s\n{tails}") from None


async def wait_for(check: Callable[[], Awaitable[bool]], *, replicas: Sequence[ServiceProcess], what: str) -> None:
    """Checks again each time a replica logs something, until ``check`` holds; fails when a replica exits."""
    news = replicas[0].news
    while True:
        news.clear()
        if await check():
            return
        for replica in replicas:
            replica.check_alive(what)
        await news.wait()


async def is_ready(client: httpx.AsyncClient, replica: ServiceProcess) -> bool:
    """Whether the replica's /readyz answers 200 (database and Kafka reachable)."""
    try:
        return (await client.get(f"{replica.url}/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def group_members(admin: AIOKafkaAdminClient, group: str, *, coordinator: int) -> tuple[str, int]:
    """The consumer group's state and how many members it has, as the group's coordinator tells."""
    [described] = await admin.describe_consumer_groups([group], group_coordinator_id=coordinator)
    [(error_code, _group, state, _protocol_type, _protocol, members, *_)] = described.groups
    assert error_code == 0, f"describing consumer group {group} failed with error code {error_code}"
    return state, len(members)


@dataclass
class Replicas:
    """Replicas of one service sharing one database, one topic prefix, one consumer group and one signing secret."""

    processes: list[ServiceProcess]
    topic_prefix: str
    secret: str
    client: httpx.AsyncClient
    group: str
    """The consumer group the replicas share, without the topic prefix (``handoff``, ``metrics``)."""

    def token(self, *scopes: str) -> dict[str, str]:
        """An Authorization header every replica trusts."""
        return {"Authorization": f"Bearer {issue_token(self.secret, scopes=list(scopes))}"}

    async def wait_ready(self, replica: ServiceProcess) -> None:
        """Waits until the replica's /readyz answers 200."""
        what = f"{replica.name} ready"
        async with within(READY_TIMEOUT_SECONDS, what=what, replicas=self.processes):
            await wait_for(lambda: is_ready(self.client, replica), replicas=self.processes, what=what)

    async def start(self, replica: ServiceProcess) -> None:
        """Starts a replica (again) and waits until it is ready."""
        await replica.start()
        await self.wait_ready(replica)

    async def wait_until_all_in_group(self) -> None:
        """Waits until the consumer group is stable with every running replica in it.

        Nothing the replicas log marks this moment, so the group's coordinator is asked each round.
        """
        group = f"{self.topic_prefix}{self.group}"
        expected = sum(replica.running for replica in self.processes)
        what = f"{expected} members in consumer group {group}"
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
        await admin.start()
        try:
            async with within(GROUP_JOIN_TIMEOUT_SECONDS, what=what, replicas=self.processes):
                coordinator = await admin.find_coordinator(group)
                while await group_members(admin, group, coordinator=coordinator) != ("Stable", expected):
                    for replica in self.processes:
                        replica.check_alive(what)
        finally:
            await admin.close()

    async def counted(self, replica: ServiceProcess, counter: str) -> float:
        """One counter of the replica's /metrics, summed over its labels: what it counted since it started."""
        response = await self.client.get(f"{replica.url}/metrics")
        assert response.status_code == 200, response.text
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in response.text.splitlines() if line.startswith(f"{counter}{{")
        )

    async def counted_assignments(self, replica: ServiceProcess) -> float:
        """How many leads this replica says it handed to a rep (its baton_handoff_assignments_total)."""
        return await self.counted(replica, "baton_handoff_assignments_total")

    async def counted_breaches(self, replica: ServiceProcess) -> float:
        """How many SLA breaches this replica says it acted on (its baton_handoff_sla_breaches_total)."""
        return await self.counted(replica, "baton_handoff_sla_breaches_total")


@asynccontextmanager
async def service_replicas(
    service: str, count: int, *, workdir: Path, database_url: str, topic_prefix: str, secret: str, **settings: str
) -> AsyncIterator[Replicas]:
    """``count`` replicas of a service, started together and ready; every one is stopped on the way out."""
    env = service_environment(
        database_url=database_url, topic_prefix=topic_prefix, secret=secret, data_dir=workdir / "data", **settings
    )
    news = asyncio.Event()
    factory = factory_of(service)
    processes = [
        ServiceProcess(
            name=f"{service}-{n}",
            factory=factory,
            port=free_port(),
            env=env,
            log_path=workdir / f"{service}-{n}.log",
            news=news,
        )
        for n in range(1, count + 1)
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        replicas = Replicas(processes=processes, topic_prefix=topic_prefix, secret=secret, client=client, group=service)
        try:
            await asyncio.gather(*(process.start() for process in processes))
            for process in processes:
                await replicas.wait_ready(process)
            yield replicas
        finally:
            await asyncio.gather(*(process.stop() for process in processes), return_exceptions=True)


def handoff_replicas(
    count: int, *, workdir: Path, database_url: str, topic_prefix: str, secret: str, **settings: str
) -> AbstractAsyncContextManager[Replicas]:
    """``count`` handoff replicas, started together and ready; every one is stopped on the way out."""
    return service_replicas(
        "handoff",
        count,
        workdir=workdir,
        database_url=database_url,
        topic_prefix=topic_prefix,
        secret=secret,
        **settings,
    )


class TopicReader:
    """A fresh consumer (no group) reading every partition of one topic from the beginning."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.events: list[CloudEvent] = []
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=KAFKA_BOOTSTRAP, enable_auto_commit=False, isolation_level="read_committed"
        )

    async def __aenter__(self) -> TopicReader:
        admin = AIOKafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP)
        await admin.start()
        try:
            [described] = await admin.describe_topics([self.topic])
        finally:
            await admin.close()
        assert not described["error_code"], f"topic {self.topic}: error code {described['error_code']}"
        partitions = [TopicPartition(self.topic, p["partition"]) for p in described["partitions"]]
        await self._consumer.start()
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self._consumer.stop()

    async def more(self) -> list[CloudEvent]:
        """The events that arrived since the last call; waits up to half a second for the first of them."""
        fetched = await self._consumer.getmany(timeout_ms=TOPIC_WAIT_MS)
        arrived = [
            from_binary(message.headers, message.value or b"") for messages in fetched.values() for message in messages
        ]
        self.events.extend(arrived)
        return arrived


@dataclass
class KafkaInstallation:
    """A service's installation on the real Kafka and PostgreSQL: its database, its topics and its secret."""

    database_url: str
    topic_prefix: str
    secret: str
    workdir: Path
    engine: AsyncEngine
    bus: KafkaBus


@asynccontextmanager
async def kafka_installation(*, workdir: Path, database_url: str, name: str) -> AsyncIterator[KafkaInstallation]:
    """Baton's topics under a prefix named ``name``, single-replica as the local broker needs, and an engine on the
    service's database; both closed afterwards."""
    topic_prefix = f"{name}."
    bus = KafkaBus(bootstrap_servers=KAFKA_BOOTSTRAP, prefix=topic_prefix, replication_factor=1)
    await bus.start()
    engine = create_engine(database_url)
    try:
        yield KafkaInstallation(
            database_url=database_url,
            topic_prefix=topic_prefix,
            secret=secrets.token_urlsafe(48),
            workdir=workdir,
            engine=engine,
            bus=bus,
        )
    finally:
        await engine.dispose()
        await bus.stop()
