"""A service's own background workers: started with it, restarted when they fail, stopped with it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import baton.runtime
from baton.runtime import ServiceRuntime, ServiceSpec
from baton.settings import Settings
from tests.unit.conftest import READ_TIMEOUT_SECONDS


async def test_a_worker_that_fails_is_started_again_and_stops_with_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(baton.runtime, "CONSUMER_RESTART_PAUSE_SECONDS", 0)
    runs: list[int] = []
    second_run = asyncio.Event()
    stopped = asyncio.Event()

    async def scheduler(runtime: ServiceRuntime) -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            raise RuntimeError("the first run fails")
        second_run.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    spec = ServiceSpec(
        name="worker-probe", database="worker_probe", migrations="baton_handoff:migrations", workers=[scheduler]
    )
    runtime = ServiceRuntime(spec, Settings(data_dir=tmp_path))
    await runtime.start()
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            await second_run.wait()
    finally:
        await runtime.stop()

    assert runs == [1, 2]
    assert stopped.is_set()
