"""deploy/local/kafka.sh and postgres.sh look at who serves a port by talking to it.

A server that answers (a Kafka broker, a PostgreSQL that accepts the baton login) is reused and never stopped;
a port held by anything else makes the scripts start their own server on free ports, which every command then
follows. Each case runs a copy of deploy/local in an empty folder: a second checkout with its own ``.data``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import random
import secrets
import shutil
import socket
import struct
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.conftest import KAFKA_BOOTSTRAP, POSTGRES_URL

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "deploy" / "local"
SCRIPT_SECONDS = 300
KAFKA_SECONDS = 60


class Checkout:
    """A copy of the deploy/local scripts under ``root``, run with extra environment ``env``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # share the jar cache: the copy does not fetch Kafka again
        self.env = {"KAFKA_CACHE_DIR": str(REPO / ".cache" / "kafka")}

    async def run(self, script: str, *args: str) -> tuple[int, str]:
        """Runs ``script`` with ``args``; returns the exit code and stdout + stderr."""
        process = await asyncio.create_subprocess_exec(
            str(self.root / "deploy" / "local" / script),
            *args,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        async with asyncio.timeout(SCRIPT_SECONDS):
            out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    async def kafka(self, *args: str) -> tuple[int, str]:
        return await self.run("kafka.sh", *args)

    async def postgres(self, *args: str) -> tuple[int, str]:
        return await self.run("postgres.sh", *args)


@pytest.fixture
async def checkout(tmp_path: Path) -> AsyncIterator[Checkout]:
    """A second checkout; whatever Kafka broker it started is stopped afterwards."""
    copy = Checkout(tmp_path / "checkout")
    shutil.copytree(SCRIPTS, copy.root / "deploy" / "local")
    yield copy
    await copy.kafka("stop", "single")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*offsets: int) -> int:
    """A port p such that p + each offset is free on 127.0.0.1 (away from the ports the project itself uses)."""
    for _ in range(500):
        port = random.randrange(20000, 30000)
        if all(port_free(port + offset) for offset in offsets):
            return port
    raise AssertionError("no free port found")


@contextlib.asynccontextmanager
async def plain_listener(port: int) -> AsyncIterator[None]:
    """Something that is neither Kafka nor PostgreSQL on ``port``: accepts connections and closes them."""

    async def close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(close, "127.0.0.1", port)
    async with server:
        yield


async def kafka_answers(port: int) -> bool:
    """Sends a Kafka ApiVersions v0 request; True if a response with our correlation id and no error comes back."""
    correlation_id = secrets.randbelow(2**31)
    client_id = b"test"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(struct.pack(">i", len(body)) + body)
                await writer.drain()
                _size, answered_id, error_code = struct.unpack(">iih", await reader.readexactly(10))
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    return answered_id == correlation_id and error_code == 0


async def accepts_connections(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def round_trip(bootstrap: str) -> bytes:
    """Produces one record to a new topic and consumes it back."""
    topic = "t" + secrets.token_hex(4)
    async with asyncio.timeout(KAFKA_SECONDS):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
        await consumer.start()
        try:
            record = await consumer.getone()
        finally:
            await consumer.stop()
    assert isinstance(record.value, bytes)
    return record.value


@pytest.mark.parametrize("held", ["broker", "controller"])
async def test_kafka_starts_its_own_broker_on_free_ports_when_the_default_ones_are_held(
    checkout: Checkout, held: str
) -> None:
    broker = free_port(0, 1, 10, 11)
    checkout.env |= {"KAFKA_SINGLE_PORT": str(broker), "KAFKA_SINGLE_CONTROLLER_PORT": str(broker + 1)}
    async with plain_listener(broker if held == "broker" else broker + 1):
        code, out = await checkout.kafka("start", "single")
        assert code == 0, out
        assert "reusing" not in out

        code, bootstrap = await checkout.kafka("bootstrap", "single")
        assert code == 0, bootstrap
        bootstrap = bootstrap.strip()
        host, port = bootstrap.split(":")
        assert host == "127.0.0.1"
        assert int(port) > broker + 1, "the broker must move above the held ports"
        assert f"up at {bootstrap}" in out
        assert (checkout.root / ".data" / "kafka" / "single" / "ports").read_text().count(f"broker={port}") == 1

        assert await round_trip(bootstrap) == b"hello"

        code, status = await checkout.kafka("status", "single")
        assert code == 0, status
        assert bootstrap in status

        code, again = await checkout.kafka("start", "single")
        assert code == 0, again
        assert f"up at {bootstrap}" in again, "a second start keeps the broker where it is"

        code, out = await checkout.kafka("stop", "single")
        assert code == 0, out
        assert "stopped" in out
        assert not await accepts_connections(int(port))
        if held == "broker":
            assert await accepts_connections(broker), "the process holding the port is left alone"


async def test_kafka_reuses_a_broker_it_did_not_start_and_leaves_it_running(checkout: Checkout) -> None:
    port = int(KAFKA_BOOTSTRAP.split(",")[0].rsplit(":", 1)[1])
    assert await kafka_answers(port), f"the local broker ({KAFKA_BOOTSTRAP}) must run: deploy/local/kafka.sh start"
    controller = free_port(0)
    checkout.env |= {"KAFKA_SINGLE_PORT": str(port), "KAFKA_SINGLE_CONTROLLER_PORT": str(controller)}

    code, out = await checkout.kafka("start", "single")
    assert code == 0, out
    assert f"reusing the broker already serving 127.0.0.1:{port}" in out
    assert not (checkout.root / ".data" / "kafka" / "single" / "node1").exists(), "no broker of its own"

    code, bootstrap = await checkout.kafka("bootstrap", "single")
    assert (code, bootstrap.strip()) == (0, f"127.0.0.1:{port}")
    code, status = await checkout.kafka("status", "single")
    assert code == 0, status
    assert "not ours" in status

    code, out = await checkout.kafka("stop", "single")
    assert code == 0, out
    assert "kafka single: not ours (reused), left running" in out
    assert await kafka_answers(port)
    producer = AIOKafkaProducer(bootstrap_servers=f"127.0.0.1:{port}")
    async with asyncio.timeout(KAFKA_SECONDS):
        await producer.start()
        await producer.stop()


async def test_postgres_url_is_the_server_in_use_and_start_is_idempotent() -> None:
    repo = Checkout(REPO)
    code, url = await repo.postgres("url")
    assert (code, url.strip()) == (0, POSTGRES_URL)
    code, url = await repo.postgres("url", "baton_scoring")
    assert (code, url.strip()) == (0, f"{POSTGRES_URL}/baton_scoring")
    for _ in range(2):
        code, out = await repo.postgres("start")
        assert code == 0, out
        assert POSTGRES_URL in out


async def test_postgres_reuses_a_server_that_accepts_the_login_and_leaves_it_running(checkout: Checkout) -> None:
    port = urlsplit(POSTGRES_URL).port
    assert port is not None
    cluster = "baton_t" + secrets.token_hex(4)
    checkout.env |= {"PG_PORT": str(port), "PG_CLUSTER": cluster}

    code, out = await checkout.postgres("start")
    assert code == 0, out
    assert f"reusing the server already serving {POSTGRES_URL}" in out
    assert not glob.glob(f"/etc/postgresql/*/{cluster}"), "no cluster of its own"
    code, url = await checkout.postgres("url", "baton_handoff")
    assert (code, url.strip()) == (0, f"{POSTGRES_URL}/baton_handoff")

    code, out = await checkout.postgres("stop")
    assert code == 0, out
    assert "not ours" in out
    conn = await asyncpg.connect(f"{POSTGRES_URL}/postgres")
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


@pytest.fixture
def throwaway_cluster() -> Iterator[str]:
    """The name of a Debian PostgreSQL cluster that is dropped afterwards."""
    name = "baton_t" + secrets.token_hex(4)
    yield name
    for conf in glob.glob(f"/etc/postgresql/*/{name}"):
        subprocess.run(["pg_dropcluster", "--stop", Path(conf).parent.name, name], check=False)
        shutil.rmtree(conf, ignore_errors=True)  # conf.d/ written by postgres.sh stays behind otherwise


async def test_postgres_moves_its_cluster_to_a_free_port_when_the_port_is_held(
    checkout: Checkout, throwaway_cluster: str
) -> None:
    held = free_port(0, 1)
    checkout.env |= {"PG_PORT": str(held), "PG_CLUSTER": throwaway_cluster}
    async with plain_listener(held):
        code, out = await checkout.postgres("start")
        assert code == 0, out
        code, url = await checkout.postgres("url")
        assert code == 0, url
        url = url.strip()
        port = urlsplit(url).port
        assert port is not None and port != held
        assert f"up at {url}" in out

        conn = await asyncpg.connect(f"{url}/baton_scoring")
        try:
            assert await conn.fetchval("SELECT current_database()") == "baton_scoring"
        finally:
            await conn.close()

        code, again = await checkout.postgres("start")
        assert code == 0, again
        assert f"up at {url}" in again, "a second start keeps the cluster where it is"
        code, status = await checkout.postgres("status")
        assert code == 0, status
        assert url in status
