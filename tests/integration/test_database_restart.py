"""A PostgreSQL restart under a running service: readiness goes red, requests fail cleanly, it recovers alone."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from baton.auth import issue_token
from baton_handoff.app import create_app
from baton_handoff.settings import HandoffSettings

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
        async with asyncio.timeout(RECOVERY_SECONDS):
            while (await client.get("/readyz")).status_code != 200:  # noqa: ASYNC110 - polling the service
                await asyncio.sleep(0.2)
        again = await client.get("/v1/reps", headers=admin)
        assert again.status_code == 200
        assert [rep["rep_id"] for rep in again.json()["items"]] == ["rep-1"]
