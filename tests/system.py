"""Starts the whole system as separate processes: ``baton run`` on the embedded default, or four
services on the real Kafka and PostgreSQL as they are deployed. Used by the end-to-end tests and the
benchmarks."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from baton.auth import issue_token
from baton.cli import SERVICES, stop_processes, wait_until_ready
from tests.conftest import KAFKA_BOOTSTRAP, POSTGRES_URL, SERVICE_DATABASES, recreate_database

READY_TIMEOUT_SECONDS = 120
ASYNC_POSTGRES_URL = POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://")


@dataclass
class RunningSystem:
    """The four services' URLs and the secret their tokens are signed with."""

    urls: dict[str, str]
    secret: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def token(self, *scopes: str, rep_id: str | None = None) -> dict[str, str]:
        """Authorization header for a token with these scopes."""
        return {"Authorization": f"Bearer {issue_token(self.secret, scopes=list(scopes), rep_id=rep_id)}"}


def _wait_ready(urls: dict[str, str], processes: dict[str, subprocess.Popen[bytes]], log: Path) -> None:
    try:
        wait_until_ready(urls, processes, timeout=READY_TIMEOUT_SECONDS)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{log.read_text()[-5000:]}") from None


@contextmanager
def embedded_system(workdir: Path, *, base_port: int = 18001) -> Iterator[RunningSystem]:
    """``baton run`` on the embedded default, with SQLite files and the embedded log under ``workdir``."""
    env = {**os.environ, "BATON_DATA_DIR": str(workdir / "data"), "BATON_BUS": "embedded"}
    env.pop("BATON_DATABASE_URL", None)
    log = workdir / "baton-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "baton.cli", "run", "--base-port", str(base_port), "--quiet"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    urls = {s.name: f"http://127.0.0.1:{base_port + s.offset}" for s in SERVICES}
    system = RunningSystem(urls=urls, secret="", env=env, processes=[process])
    try:
        _wait_ready(urls, {"baton run": process}, log)
        system.secret = (workdir / "data" / "jwt-secret").read_text().strip()
        yield system
    finally:
        system.exit_codes = stop_processes([process], signum=signal.SIGINT, grace=30)


async def _recreate_service_databases(prefix: str) -> None:
    for database in SERVICE_DATABASES:
        await recreate_database(f"{prefix}_{database}")


@contextmanager
def kafka_system(workdir: Path, name: str, *, base_port: int = 18101) -> Iterator[RunningSystem]:
    """Four service processes on the real Kafka and PostgreSQL, with databases and topics named after ``name``."""
    asyncio.run(_recreate_service_databases(name))
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "BATON_ENV": "production",
        "BATON_BUS": "kafka",
        "BATON_KAFKA_BOOTSTRAP_SERVERS": KAFKA_BOOTSTRAP,
        "BATON_KAFKA_TOPIC_PREFIX": f"{name}.",
        "BATON_KAFKA_REPLICATION_FACTOR": "1",  # the local development broker is a single node
        "BATON_DATABASE_URL": f"{ASYNC_POSTGRES_URL}/{name}_{{service}}",
        "BATON_JWT_SECRET": secret,
        "BATON_DATA_DIR": str(workdir / "data"),
    }
    log = workdir / "services.log"
    processes: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    with log.open("wb") as out:
        for service in SERVICES:
            port = base_port + service.offset
            urls[service.name] = f"http://127.0.0.1:{port}"
            command = [sys.executable, "-m", "uvicorn", "--factory", service.factory, "--port", str(port)]
            processes.append(
                subprocess.Popen([*command, "--no-access-log"], env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    system = RunningSystem(urls=urls, secret=secret, env=env, processes=processes)
    try:
        _wait_ready(urls, dict(zip(urls, processes, strict=True)), log)
        yield system
    finally:
        system.exit_codes = stop_processes(processes, signum=signal.SIGINT, grace=30)
