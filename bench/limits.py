"""This machine's raw limits: a bare FastAPI endpoint, raw aiokafka, raw asyncpg commits, raw fsynced SQLite commits."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tests.conftest import POSTGRES_URL, recreate_database

from baton.cli import stop_processes
from baton.events import CloudEvent, LeadReceived, new_id, to_binary
from bench.memory import rss_mb
from bench.report import percentile
from bench.wrk import run_wrk


def sample_event() -> tuple[list[tuple[str, bytes]], bytes]:
    """A realistic ``baton.lead.received.v1`` event in Kafka binary mode: the size every raw message gets."""
    lead_id = new_id()
    data = LeadReceived(
        lead_id=lead_id,
        source="website",
        campaign="spring-launch",
        email="margaret.hamilton.4711@example.com",
        first_name="Margaret",
        last_name="Hamilton",
        company="Hamilton Labs",
        title="VP Marketing",
        country="US",
        company_size=250,
        industry="software",
        utm={"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "spring-launch"},
        received_at=datetime.now(UTC),
    )
    _, headers, value = to_binary(CloudEvent.wrap(data, source="/baton/lead-ingest"))
    return headers, value


def message_bytes(headers: list[tuple[str, bytes]], value: bytes) -> int:
    """Key, headers and body of one message, in bytes."""
    return 36 + len(value) + sum(len(name) + len(raw) for name, raw in headers)


def fastapi_limit(*, port: int, seconds: float, batch_size: int, workdir: Path) -> dict[str, Any]:
    """Loads the bare FastAPI app with the same wrk command as Baton's intake, single and batch.

    Args:
        port: Where the app listens.
        seconds: How long each wrk run lasts.
        batch_size: Leads per batch request.
        workdir: Where its log goes.

    Returns:
        ``single_rps``, ``batch_leads_per_second``, ``batch_size``, ``rss_mb`` and the wrk details (among them
        ``single_load_generator_cores``: wrk's own CPU at the highest single-lead rate this machine serves).
    """
    log = workdir / "bare-fastapi.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.bare_app:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        tag = "bare" + secrets.token_hex(3)
        single = run_wrk(f"{url}/v1/leads", token="none", tag=tag, seconds=seconds)
        batch = run_wrk(
            f"{url}/v1/leads:batch", token="none", tag=tag + "b", batch=batch_size, connections=8, seconds=seconds
        )
        rss = rss_mb(process.pid)
    finally:
        stop_processes([process], grace=10)
    return {
        "name": "bare FastAPI 202 endpoint",
        "single_rps": single.ok / single.seconds,
        "batch_leads_per_second": batch.ok * batch_size / batch.seconds,
        "batch_size": batch_size,
        "rss_mb": rss,
        "single_errors": single.errors,
        "batch_errors": batch.errors,
        "single_latency_ms": single.latency_ms,
        "single_load_generator_cores": single.load_generator_cores,
    }


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the bare FastAPI app exited with {process.returncode}")
            try:
                if client.get(f"{url}/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise RuntimeError("the bare FastAPI app did not start")


async def kafka_replication(bootstrap: str) -> int:
    """The replication factor Baton's topics get on this cluster: 3, or fewer on a smaller cluster."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    return max(min(3, len(cluster.get("brokers", []))), 1)


async def kafka_limit(*, bootstrap: str, messages: int, pings: int) -> dict[str, Any]:
    """Produces ``messages`` lead-sized messages (acks=all, idempotent, like Baton's bus) and consumes them back.

    Args:
        bootstrap: Kafka bootstrap servers.
        messages: How many messages to push through.
        pings: How many single messages to time one by one for the hop latency.

    Returns:
        ``messages_per_second`` (first send to last receive), ``produce_per_second``, ``hop_ms`` (p50
        one-way latency of a lone message), ``message_bytes``.
    """
    headers, value = sample_event()
    topic = f"bench-raw-{secrets.token_hex(4)}"
    replication = await kafka_replication(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"min.insync.replicas": str(min(2, replication))}
        await admin.create_topics([NewTopic(topic, 3, replication, topic_configs=config)])
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
        )
        await producer.start()
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(3)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            received = 0
            done = asyncio.Event()
            arrived = asyncio.Event()
            arrivals: list[float] = []

            async def consume() -> None:
                nonlocal received
                while True:
                    batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                    now = time.perf_counter()
                    for records in batches.values():
                        received += len(records)
                        arrivals.extend(now for _ in records)
                    arrived.set()
                    if received >= messages:
                        done.set()

            reader = asyncio.create_task(consume())
            started = time.perf_counter()
            chunk: list[asyncio.Future[Any]] = []
            for _ in range(messages):
                chunk.append(await producer.send(topic, value=value, key=new_id().encode(), headers=headers))
                if len(chunk) >= 1000:
                    await asyncio.gather(*chunk)
                    chunk.clear()
            await asyncio.gather(*chunk)
            produced = time.perf_counter() - started
            async with asyncio.timeout(120):
                await done.wait()
            elapsed = (arrivals[messages - 1] if len(arrivals) >= messages else time.perf_counter()) - started
            hops: list[float] = []
            for _ in range(pings):
                target = received + 1
                sent = time.perf_counter()
                await producer.send_and_wait(topic, value=value, key=new_id().encode(), headers=headers)
                while received < target:
                    arrived.clear()
                    async with asyncio.timeout(10):
                        await arrived.wait()
                hops.append((arrivals[target - 1] - sent) * 1000)
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        finally:
            await consumer.stop()
            await producer.stop()
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    return {
        "name": "raw aiokafka produce → consume (acks=all, idempotent)",
        "replication_factor": replication,
        "messages": messages,
        "messages_per_second": messages / elapsed,
        "produce_per_second": messages / produced,
        "hop_ms": percentile(hops, 50),
        "hop_p99_ms": percentile(hops, 99),
        "message_bytes": message_bytes(headers, value),
    }


async def postgres_limit(*, seconds: float, connections: int, pings: int) -> dict[str, Any]:
    """Single-row INSERT commits from ``connections`` connections at once, to a scratch database.

    Args:
        seconds: How long the connections insert.
        connections: Concurrent connections, each committing one row at a time.
        pings: Commits timed one by one on a single connection for the commit latency.

    Returns:
        ``commits_per_second``, ``commit_ms`` (p50 of a lone commit), ``server_version``.
    """
    _, value = sample_event()
    payload = value.decode()
    name = f"bench_raw_{secrets.token_hex(4)}"
    await recreate_database(name)
    url = f"{POSTGRES_URL}/{name}"
    try:
        pool = [await asyncpg.connect(url) for _ in range(connections)]
        try:
            await pool[0].execute(
                "CREATE TABLE leads (id bigserial PRIMARY KEY, lead_id text NOT NULL, payload text NOT NULL, "
                "created_at timestamptz NOT NULL DEFAULT now())"
            )
            version = str(await pool[0].fetchval("SHOW server_version"))
            insert = "INSERT INTO leads (lead_id, payload) VALUES ($1, $2)"
            deadline = time.perf_counter() + seconds
            counts = [0] * connections

            async def loop(index: int, conn: asyncpg.Connection) -> None:
                while time.perf_counter() < deadline:
                    await conn.execute(insert, new_id(), payload)
                    counts[index] += 1

            started = time.perf_counter()
            await asyncio.gather(*(loop(i, c) for i, c in enumerate(pool)))
            elapsed = time.perf_counter() - started
            latencies = []
            for _ in range(pings):
                sent = time.perf_counter()
                await pool[0].execute(insert, new_id(), payload)
                latencies.append((time.perf_counter() - sent) * 1000)
        finally:
            for conn in pool:
                await conn.close()
    finally:
        admin = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    return {
        "name": f"raw asyncpg single-row commits ({connections} connections)",
        "commits_per_second": sum(counts) / elapsed,
        "commit_ms": percentile(latencies, 50),
        "commit_p99_ms": percentile(latencies, 99),
        "connections": connections,
        "server_version": version,
    }


def sqlite_append_limit(*, seconds: float, rows_per_commit: int = 100) -> dict[str, Any]:
    """Lead-sized rows appended to a SQLite log table, ``rows_per_commit`` per fsynced transaction (WAL,
    synchronous=FULL), the way the embedded log publishes a batch.

    Args:
        seconds: How long to append.
        rows_per_commit: Rows per transaction.

    Returns:
        ``messages_per_second``, ``message_bytes``.
    """
    headers, value = sample_event()
    header_text = repr(headers)
    appended = 0
    with tempfile.TemporaryDirectory(prefix="baton-bench-sqlite-") as workdir:
        conn = _sqlite_log(Path(workdir) / "raw.db")
        try:
            started = time.perf_counter()
            deadline = started + seconds
            while time.perf_counter() < deadline:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO log (topic, key, headers, value) VALUES (?, ?, ?, ?)",
                    [("leads.ingested", new_id(), header_text, value) for _ in range(rows_per_commit)],
                )
                conn.execute("COMMIT")
                appended += rows_per_commit
            elapsed = time.perf_counter() - started
        finally:
            conn.close()
    return {
        "name": f"raw SQLite appends ({rows_per_commit} rows per fsynced commit)",
        "messages_per_second": appended / elapsed,
        "message_bytes": message_bytes(headers, value),
    }


def _sqlite_log(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE log (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, key TEXT NOT NULL, "
        "headers TEXT NOT NULL, value BLOB NOT NULL)"
    )
    return conn


def sqlite_limit(*, seconds: float) -> dict[str, Any]:
    """Single-row fsynced commits to a SQLite file in WAL mode with synchronous=FULL, like the embedded log.

    Args:
        seconds: How long to insert.

    Returns:
        ``commits_per_second``, ``commit_ms`` (p50).
    """
    headers, value = sample_event()
    with tempfile.TemporaryDirectory(prefix="baton-bench-sqlite-") as workdir:
        conn = _sqlite_log(Path(workdir) / "raw.db")
        try:
            header_text = repr(headers)
            latencies: list[float] = []
            started = time.perf_counter()
            deadline = started + seconds
            while (now := time.perf_counter()) < deadline:
                conn.execute(
                    "INSERT INTO log (topic, key, headers, value) VALUES (?, ?, ?, ?)",
                    ("leads.ingested", new_id(), header_text, value),
                )
                latencies.append((time.perf_counter() - now) * 1000)
            elapsed = time.perf_counter() - started
        finally:
            conn.close()
    return {
        "name": "raw SQLite single-row commits (WAL, synchronous=FULL)",
        "commits_per_second": len(latencies) / elapsed,
        "commit_ms": percentile(latencies, 50),
        "commit_p99_ms": percentile(latencies, 99),
        "sqlite_version": sqlite3.sqlite_version,
    }
