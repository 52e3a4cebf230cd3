"""PostgreSQL stopped under a running service: requests fail cleanly, events wait, and it recovers alone."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from baton.auth import issue_token
from baton.bus import Record
from baton.bus.kafka import KafkaBus
from baton.events import LEADS_INGESTED, LEADS_SCORED, CloudEvent, LeadReceived, LeadScored, dlq_topic
from baton.runtime import ServiceRuntime
from baton_handoff.app import create_app
from baton_handoff.settings import HandoffSettings
from baton_scoring.app import SPEC as SCORING
from baton_scoring.models import LeadScore
from baton_scoring.settings import ScoringSettings
from tests.conftest import KAFKA_BOOTSTRAP, LogSignal

pytestmark = pytest.mark.integration

POSTGRES_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "postgres.sh"
RECOVERY_SECONDS = 60


async def postgres(command: str) -> None:
    process = await asyncio.create_subprocess_exec(str(POSTGRES_SCRIPT), command, stdout=subprocess.DEVNULL)
    assert await process.wait() == 0, f"postgres.sh {command} failed"


async def test_service_answers_503_while_postgresql_is_down_and_recovers_by_itself(
    tmp_path: Path, fresh_database: Callable[[str], Awaitable[str]]
) -> None:
    settings = HandoffSettings(data_dir=tmp_path, database_url=await fresh_database("restart"))
    app = create_app(settings)
    admin = {"Authorization": f"Bearer {issue_token(settings.signing_secret(), scopes=['admin'])}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://handoff") as client,
    ):
        created = await client.post("/v1/reps", json={"rep_id": "rep-1", "name": "One"}, headers=admin)
        assert created.status_code == 201
        try:
            await postgres("stop")
            down = await client.get("/v1/reps", headers=admin)
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert down.headers["retry-after"]
            assert "database" in down.json()["detail"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"] == {"database": False, "bus": True}
        finally:
            await postgres("start")
        # postgres.sh start returns once PostgreSQL accepts connections. The first use of the pool may
        # still meet a connection the restart killed, which invalidates the whole pool; the next is fresh.
        readiness = [(await client.get("/readyz")).status_code for _ in range(2)]
        assert readiness[-1] == 200, readiness
        again = await client.get("/v1/reps", headers=admin)
        assert again.status_code == 200
        assert [rep["rep_id"] for rep in again.json()["items"]] == ["rep-1"]


async def test_events_arriving_while_postgresql_is_down_are_all_applied_once_it_is_back_and_none_is_parked(
    tmp_path: Path,
    unique_name: str,
    fresh_database: Callable[[str], Awaitable[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = ScoringSettings(
        data_dir=tmp_path,
        database_url=await fresh_database("outage"),
        bus="kafka",
        kafka_bootstrap_servers=KAFKA_BOOTSTRAP,
        kafka_topic_prefix=f"{unique_name}.",
        kafka_replication_factor=1,
    )
    runtime = ServiceRuntime(SCORING, settings)
    publisher = KafkaBus(bootstrap_servers=KAFKA_BOOTSTRAP, prefix=f"{unique_name}.", replication_factor=1)
    leads = [f"outage-{n}" for n in range(5)]
    scored: set[str] = set()
    all_scored = asyncio.Event()

    async def watch_scores(batch: Sequence[Record]) -> None:
        scored.update(r.key for r in batch if r.header("ce_type") == LeadScored.event_type)
        if scored >= set(leads):
            all_scored.set()

    await runtime.start()
    await publisher.start()
    watcher = asyncio.create_task(publisher.consume("score-watcher", [LEADS_SCORED], watch_scores))
    try:
        with (
            caplog.at_level(logging.WARNING, logger="baton.consumer"),
            LogSignal("baton.consumer", "transient failure") as retrying,
        ):
            try:
                await postgres("stop")
                await publisher.publish(
                    [
                        Record.from_event(
                            CloudEvent.wrap(
                                LeadReceived(lead_id=lead, email=f"{lead}@example.com", received_at=datetime.now(UTC)),
                                source="/test",
                            )
                        )
                        for lead in leads
                    ]
                )
                async with asyncio.timeout(RECOVERY_SECONDS):  # scoring met the outage
                    await retrying.seen.wait()
            finally:
                await postgres("start")
            async with asyncio.timeout(RECOVERY_SECONDS):
                await all_scored.wait()
        parked = await publisher.read(dlq_topic(LEADS_INGESTED))
        stored = await _scored(runtime)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await publisher.stop()
        await runtime.stop()
    assert stored == len(leads)
    assert parked == []
    assert not any("dead-letter" in r.getMessage() for r in caplog.records)


async def _scored(runtime: ServiceRuntime) -> int:
    async with runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(LeadScore)) or 0)
